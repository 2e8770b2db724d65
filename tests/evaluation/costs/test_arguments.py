"""The cost benchmark's settings (icpt.evaluation.costs.arguments): what the command line accepts and refuses."""

import pytest

from helpers.costs import run
from icpt.commands.arguments import ArgumentParser
from icpt.evaluation.costs.arguments import CostArguments


def test_a_backbone_and_a_configuration_exclude_each_other_and_bank_sizes_parse():
    with pytest.raises(ValueError, match="exclude each other"):
        run(["--backbone", "x", "--config", "llava-1.5-7b"])
    (args,) = ArgumentParser(CostArguments).parse(["--bank-sizes", "1000,10,10", "--skip-many-concepts"])
    assert args.bank_sizes == (10, 1000) and args.skip_many_concepts
    for wrong in (["--bank-sizes", "0"], ["--bank-sizes", "a,b"], ["--config", "gpt-5"]):
        with pytest.raises(SystemExit):
            ArgumentParser(CostArguments).parse(wrong)
