"""A mistyped command line gets the usage line and the problem, exit 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer

from estampille.cli import app, main


def _commands(group, path=()):
    """Every command's words, e.g. ("run",), ("review", "approve"), walked from the app itself so a
    new command is covered without editing this list."""
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, path + (name,))
        else:
            yield path + (name,)


COMMANDS = sorted(_commands(typer.main.get_command(app)))


def test_every_command_is_walked():
    assert {("run",), ("review", "approve"), ("lookalike", "check"), ("ledger", "verify")} <= set(COMMANDS)


@pytest.mark.parametrize("words", COMMANDS, ids=" ".join)
def test_an_unknown_option_of_each_command_is_a_usage_error(words, capsys):
    assert main([*words, "--no-such-option"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"Usage: estampille {' '.join(words)} ")
    assert "error: No such option: --no-such-option" in err
    assert "Traceback" not in err


def test_an_unknown_command_through_the_installed_script_is_a_usage_error():
    """The real entry point, in its own process: what a user sees in a terminal."""
    done = subprocess.run(
        [sys.executable, "-m", "estampille.cli", "publsh", "--brand", "x"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("Usage: estampille [OPTIONS] COMMAND [ARGS]...")
    assert "error: No such command 'publsh'" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_an_unknown_subcommand_and_a_bad_option_value_are_usage_errors(capsys):
    assert main(["review", "aprove", "d-1", "--reviewer", "x"]) == 2
    assert "error: No such command 'aprove'" in capsys.readouterr().err
    assert main(["run", "--brand", "x", "--engine", "docker"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Usage: estampille run ") and "--engine must be prefect or plain" in err
