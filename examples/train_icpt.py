"""Train an ICPT projector on episodes, with the backbone frozen (the same as `icpt train`).

One process (CPU or one GPU):

    python examples/train_icpt.py --backbone icpt/default/backbone --output_dir outputs/projector \
        --max_steps 600 --per_device_train_batch_size 16 --learning_rate 3e-4

Several GPUs, unchanged script (see examples/accelerate_configs/multi_gpu.yaml):

    accelerate launch --config_file examples/accelerate_configs/multi_gpu.yaml examples/train_icpt.py --backbone ... --output_dir ...

Episodes come from `--episodes` (a folder written by `Dataset.save_to_disk` with the columns of
`icpt.episodes.EPISODE_FEATURES`) or, by default, are generated from the project's world
(training identities and environment set A only). Every checkpoint holds only the projector; an
interrupted run resumes where it stopped with `--resume_from_checkpoint` (or `--resume_from_checkpoint
latest`) and ends with the same weights as an uninterrupted run. A run records what it was started
with in `run_settings.json`; resuming a folder started with other settings (or recorded none) is refused.
The code lives in `icpt/training/run.py`; `python examples/train_icpt.py --help` lists every option.
"""

import sys

from icpt.commands.train import main

if __name__ == "__main__":
    main(sys.argv[1:])
