"""User-facing errors: one red line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NoReturn

import typer

USAGE_EXIT_CODE = 2
CANCELLED_EXIT_CODE = 130  # what shells report for a job ended by Ctrl-C


class CliError(Exception):
    """Bad input from the user; the message names the option at fault."""


def fail(message: str) -> NoReturn:
    """Print one red error line and exit with the usage error code."""
    line = " ".join(str(message).split())  # one line, whatever the message held
    typer.secho(f"Error: {line}", fg=typer.colors.RED, err=True)
    raise typer.Exit(USAGE_EXIT_CODE)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn CliError raised inside into a red line and exit code 2."""
    try:
        yield
    except CliError as exc:
        fail(str(exc))


@contextlib.contextmanager
def data_errors(option: str = "--data") -> Iterator[None]:
    """Re-raise the core's DataError as a CliError that names the option."""
    from worker.ml.datasets.dataset import DataError  # light: NumPy only

    try:
        yield
    except DataError as exc:
        raise CliError(f"{option}: {exc}") from exc
