"""What the commands' parsers share (icpt/commands/arguments.py): `ArgumentParser` over dataclasses, one-line usage
errors, and `ModelArguments`."""

from dataclasses import dataclass, field

import pytest

from icpt.commands.arguments import EXIT_ERROR, ArgumentParser, ModelArguments
from icpt.inference import DEFAULT_MODEL


@dataclass
class Arguments:
    image: str = field(metadata={"positional": True, "help": "the photo"})
    max_new_tokens: int = field(default=48, metadata={"help": "longest answer"})
    concept: list[str] = field(default_factory=list, metadata={"action": "append", "help": "a label, repeatable"})
    sizes: list[int] | None = field(default=None, metadata={"type": int, "nargs": "*", "help": "sizes, maybe none"})


def test_positional_options_in_both_spellings_and_metadata_argparse_takes_as_is():
    parser = ArgumentParser(Arguments, prog="ask")
    (args,) = parser.parse(["photo.jpg", "--max-new-tokens", "8", "--concept", "<bo>", "--concept", "<kiki>",
                            "--sizes"])
    assert args == Arguments(image="photo.jpg", max_new_tokens=8, concept=["<bo>", "<kiki>"], sizes=[])
    (args,) = parser.parse(["photo.jpg", "--max_new_tokens", "9", "--sizes", "1", "2"])
    assert (args.max_new_tokens, args.concept, args.sizes) == (9, [], [1, 2])


def test_a_usage_error_is_one_line_that_points_to_help(capsys):
    parser = ArgumentParser(Arguments, prog="icpt ask")
    for argv, problem in ((["photo.jpg", "--no-such-option"], "unrecognized arguments: --no-such-option"),
                          ([], "the following arguments are required: image"),
                          (["photo.jpg", "--max-new-tokens", "many"], "invalid int value: 'many'")):
        with pytest.raises(SystemExit) as exit:
            parser.parse(argv)
        assert exit.value.code == EXIT_ERROR
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("icpt ask: error: ") and problem in err
        assert err.rstrip().endswith("(see `icpt ask --help`)")


def test_model_arguments_default_to_the_embedded_default():
    (model,) = ArgumentParser(ModelArguments).parse([])
    assert model == ModelArguments(model=str(DEFAULT_MODEL), backbone=None, device=None)
    (model,) = ArgumentParser(ModelArguments).parse(["--model", "me/icpt", "--device", "cpu"])
    assert (model.model, model.device) == ("me/icpt", "cpu")
    text = ArgumentParser(ModelArguments, prog="icpt ask").format_help()
    assert "PATH_OR_REPO" in text and "the embedded default" in text
