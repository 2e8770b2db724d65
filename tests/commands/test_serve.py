"""`icpt serve` (icpt/commands/serve.py): a subcommand of the `icpt` dispatcher."""


def test_icpt_serve_is_a_subcommand(capsys):
    from icpt.commands.cli import main

    assert main(["serve", "--help"]) == 0
    assert "--port" in capsys.readouterr().out
    assert main(["serve", "--port", "many"]) == 2
