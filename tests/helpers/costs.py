"""The cost benchmark (icpt.evaluation.costs) from a command line, as examples/benchmark_costs.py parses it."""

from icpt.commands.arguments import ArgumentParser
from icpt.evaluation.costs.arguments import CostArguments
from icpt.evaluation.costs.run import benchmark_costs


def run(argv: list[str]) -> dict:
    """The benchmark from a command line in the dash forms the docs use, as the script parses it."""
    (args,) = ArgumentParser(CostArguments).parse(argv)
    return benchmark_costs(args)
