"""The pretraining's arguments (icpt/world/pretraining/arguments.py): every documented command line parses."""

import pytest

from icpt.commands.arguments import ArgumentParser
from icpt.world.pretraining.arguments import PretrainArguments

# The documented command lines of the recipe (README, docs/default_model.md, scripts/pretrain_backbone_gpu.sh), and
# one line with every other option
DOCUMENTED = [
    "--threads 2 --max-minutes 60",
    "--threads 2 --max-minutes 60 --resume",
    "--work-dir /tmp/w --output-dir /tmp/o --device cuda --workers 15 --threads 4 --checkpoint-minutes 2 --patch-size 8"
    " --contrastive-steps 4000 --contrastive-pairs 12 --comparison-steps 3000 --question-steps 3000 --eval-every 1000"
    " --max-minutes 6.5 --export-now",
    "--patch-size 8 --contrastive-steps 400 --contrastive-pairs 12 --comparison-steps 0 --question-steps 0"
    " --extra-training-identities 4000 --renders-per-identity 16",
    "--patch-size 8 --extra-training-identities 4000 --renders-per-identity 16 --contrastive-steps 6000"
    " --contrastive-identities 48 --contrastive-pairs 24 --attribute-weight 5 --comparison-steps 3000"
    " --question-steps 3000 --eval-every 2000 --max-minutes 8",
    "--look-alike-fraction 0.5 --comparison-steps 4000 --contrastive-steps 4000",
    "--init-from icpt/default/backbone --patch-size 8 --contrastive-steps 4000 --contrastive-pairs 12"
    " --comparison-steps 3000 --question-steps 500 --look-alike-fraction 0.6 --attribute-weight 0 --lr 3e-4"
    " --tower-lr 1e-4 --threads 1",
    "--init-from icpt/default/backbone --patch-size 8 --question-steps 0 --format-steps 1500 --format-tower-lr 0"
    " --eval-limit 50 --eval-references 3 --describe-every 3 --batch-size 32 --seed 0 --num-identities 1000"
    " --image-size 64 --vision-hidden 128 --vision-layers 4 --text-hidden 256 --text-layers 4 --views 4"
    " --contrastive-lr 1e-3 --temperature 0.1",
]


@pytest.mark.parametrize("line", DOCUMENTED)
def test_documented_command_lines_parse_in_their_dash_forms(line):
    (args,) = ArgumentParser(PretrainArguments).parse(line.split())
    for option, value in zip(line.split(), line.split()[1:] + [""]):
        if option.startswith("--"):
            parsed = getattr(args, option[2:].replace("-", "_"))
            assert parsed is True if isinstance(parsed, bool) else parsed == type(parsed)(value), option
