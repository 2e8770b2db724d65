"""One ICPT training step with the backbone sharded by FSDP2 over the processes of `torchrun` (gloo on CPU), as
`examples/accelerate_configs/fsdp.yaml` shards it on GPUs (the backbone's `_no_split_modules` layers, then the
whole model). Each process checks its loss and the projector's gradients against the unsharded model's.

    python -m torch.distributed.run --nproc_per_node 2 tests/helpers/fsdp_step.py BACKBONE EPISODES
"""

import copy
import sys

import torch
import torch.distributed as dist
from datasets import load_from_disk
from torch.distributed.fsdp import fully_shard

from icpt.training.trainer import EpisodeCollator
from modeling_icpt import ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor


def main(backbone: str, episodes: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    processor = ICPTProcessor.from_backbone(backbone, max_prompt_length=4)
    model = ICPTForConditionalGeneration.from_backbone(
        backbone, prompt_token_id=processor.prompt_token_id, max_prompt_length=4, min_prompt_length=1,
        projector_hidden_size=32, projector_heads=2, projector_layers=1, reader_lora_rank=2).train()
    rows = load_from_disk(episodes)
    batch = EpisodeCollator(processor, 1, 4)([rows[i] for i in range(2 * rank, 2 * rank + 2)])  # this process's half

    reference = copy.deepcopy(model)
    expected_loss = reference(**batch).loss
    expected_loss.backward()
    expected = {name: p.grad.clone() for name, p in reference.named_parameters() if p.grad is not None}
    for grad in expected.values():  # data parallel: the mean over processes
        dist.all_reduce(grad)
        grad /= world

    layers = set(model.vlm._no_split_modules or [])
    wrapped = [module for module in model.modules() if type(module).__name__ in layers]
    assert wrapped, f"no {layers} layer to shard"
    for module in wrapped:
        fully_shard(module)
    fully_shard(model)
    loss = model(**batch).loss
    loss.backward()
    torch.testing.assert_close(loss.detach(), expected_loss.detach())
    got = {name: p.grad.full_tensor() for name, p in model.named_parameters() if p.grad is not None}
    assert got.keys() == expected.keys(), sorted(got.keys() ^ expected.keys())[:5]
    assert all(name.startswith("projector.") or ".lora_" in name for name in got), "a frozen weight got a gradient"
    for name, grad in got.items():
        torch.testing.assert_close(grad, expected[name], rtol=1e-4, atol=1e-6)
    sharded = sum(type(p).__name__ == "DTensor" for p in model.parameters())
    print(f"rank {rank}: {len(wrapped)} layers sharded, {sharded} sharded parameters, {len(got)} with gradients, "
          f"loss {loss.item():.4f}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
