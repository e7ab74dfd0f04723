"""`stacklab runs ... --server` without a server to hand: help, bad input and an address
nobody answers are one red line and exit code 2 (the commands against a real server are
in test_end_to_end.py)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.errors import CliError
from cli.main import app
from cli.remote import _params
from tests.stack import free_port

SUBCOMMANDS = ("list", "show", "launch", "wait", "cancel", "download")


def runs(*args: str):
    return CliRunner().invoke(app, ["runs", *args])


@pytest.mark.parametrize("command", ["", *SUBCOMMANDS])
def test_every_runs_command_has_help(command):
    result = runs(*filter(None, [command]), "--help")
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_a_server_nobody_answers_is_one_line_and_exit_2():
    result = runs("show", "1", "--server", f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 2
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1


def test_the_server_comes_from_the_environment_too(monkeypatch):
    monkeypatch.setenv("STACKLAB_SERVER", f"http://127.0.0.1:{free_port()}")
    result = runs("cancel", "1")
    assert result.exit_code == 2 and "Error: " in result.output


def test_params_come_from_json_then_dotted_pairs_read_as_json_values():
    assert _params(["ae01.epochs=2", "augment=true", "name=x"], '{"seed": 1}') == {
        "seed": 1,
        "ae01": {"epochs": 2},
        "augment": True,
        "name": "x",
    }
    with pytest.raises(CliError, match="KEY=VALUE"):
        _params(["epochs"], None)
    with pytest.raises(CliError, match="JSON object"):
        _params([], "[1]")
