"""`stacklab runs ... --server URL`: list, show, launch, wait for, cancel and download
runs of a stacklab server, through the Python client (client/api.py).

Tables for people, `--json` for scripts. Nothing heavy at import: httpx and the client
load inside the commands, so `--help` stays instant.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.errors import CliError, fail

if TYPE_CHECKING:
    from client.api import Client

RUN_FAILED_EXIT_CODE = 1
TABLE = (("id", 6), ("kind", 9), ("status", 10), ("name", 28), ("dataset", 12), ("best", 22))

runs_app = typer.Typer(
    help="Runs on a stacklab server (--server URL, or STACKLAB_SERVER): list, show, launch, "
    "wait, cancel, download. A token comes from --token or STACKLAB_TOKEN.",
    no_args_is_help=True,
)

Server = Annotated[
    str,
    typer.Option(
        envvar="STACKLAB_SERVER", metavar="URL", help="The server, e.g. http://gpu-box:8000."
    ),
]
Token = Annotated[
    str | None,
    typer.Option(envvar="STACKLAB_TOKEN", show_envvar=True, help="Access token, if it has one."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
RunId = Annotated[int, typer.Argument(metavar="RUN", help="A run id.")]


@contextlib.contextmanager
def connected(server: str, token: str | None) -> Iterator[Client]:
    """The client, closed after; its errors as one red line (the server's fields named)."""
    from client.api import Client
    from client.errors import RunEnded, StacklabError

    try:
        with Client(server, token=token) as lab:
            yield lab
    except RunEnded as err:
        typer.secho(f"Error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(RUN_FAILED_EXIT_CODE) from err
    except (StacklabError, CliError) as err:
        fail(str(err))


def _print_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def _best(row: dict[str, Any]) -> str:
    best = row.get("best") or {}
    value = best.get("value")
    return "" if value is None else f"{best.get('label', '')} {value:.4g}".strip()


def _print_table(rows: Sequence[dict[str, Any]]) -> None:
    typer.echo("  ".join(name.ljust(width) for name, width in TABLE).rstrip())
    for row in rows:
        cells = {**row, "best": _best(row)}
        line = "  ".join(str(cells.get(name) or "")[:width].ljust(width) for name, width in TABLE)
        typer.echo(line.rstrip())


@runs_app.command("list")
def list_runs(
    server: Server,
    token: Token = None,
    kind: Annotated[str | None, typer.Option(help="Only runs of this job kind.")] = None,
    status: Annotated[str | None, typer.Option(help="Only runs in this status.")] = None,
    tag: Annotated[str | None, typer.Option(help="Only runs with this tag.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Only runs on this data set.")] = None,
    filter: Annotated[
        str | None,
        typer.Option(help="The runs page's filter, e.g. 'param.epochs > 2 and tag in (a, b)'."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most runs to list (newest first).")] = 50,
    as_json: AsJson = False,
) -> None:
    """Runs, newest first, with the runs table's filters."""
    filters = {"kind": kind, "status": status, "tag": tag, "dataset": dataset, "filter": filter}
    with connected(server, token) as lab:
        rows = list(lab.table(limit=limit, page_size=min(limit, 500), **filters))
    if as_json:
        _print_json(rows)
    else:
        _print_table(rows)


@runs_app.command()
def show(run_id: RunId, server: Server, token: Token = None, as_json: AsJson = False) -> None:
    """One run: status, progress, parameters, result."""
    with connected(server, token) as lab:
        run = lab.run(run_id)
    if as_json:
        _print_json(run.data)
        return
    from client.progress import fraction
    from client.runs import flatten

    typer.echo(f"run {run.id}  {run.kind}  {run.name}\nstatus:   {run.status}")
    typer.echo(f"progress: {100 * fraction(run.data.get('progress')):.0f} %")
    if run.error:
        typer.echo(f"error:    {run.error}")
    for key, value in sorted(flatten(run.params).items()):
        typer.echo(f"  param.{key} = {value}")
    if run.test_accuracy is not None:
        typer.echo(f"test accuracy: {run.test_accuracy:.4f}")
    typer.echo(run.url)


def _params(pairs: Sequence[str], params_json: str | None) -> dict[str, Any]:
    """--params JSON, then each --param dotted.key=value (value read as JSON, else text)."""
    out: dict[str, Any] = {}
    if params_json:
        try:
            out = json.loads(params_json)
        except ValueError as err:
            raise CliError(f"--params: not JSON ({err})") from err
        if not isinstance(out, dict):
            raise CliError("--params: expected a JSON object")
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--param: expected KEY=VALUE, got {pair!r}")
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


@runs_app.command()
def launch(
    kind: Annotated[str, typer.Argument(help="Job kind: pretrain, tune, finetune, ...")],
    server: Server,
    token: Token = None,
    dataset: Annotated[str, typer.Option(help="A data set in the server's store.")] = "demo",
    preset: Annotated[
        str | None, typer.Option(help="The form's preset to start from: quick, seed or full.")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(metavar="KEY=VALUE", help="A parameter, repeatable: --param ae01.epochs=2."),
    ] = None,
    params: Annotated[str | None, typer.Option(metavar="JSON", help="Parameters as JSON.")] = None,
    parent: Annotated[int | None, typer.Option(help="The pretrain run it builds on.")] = None,
    name: Annotated[str | None, typer.Option(help="The run's name.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="A tag, repeatable.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until it finishes.")] = False,
    as_json: AsJson = False,
) -> None:
    """Queue a run; print its id (and with --wait, how it ended)."""
    with connected(server, token) as lab:
        values = _params(param or [], params)
        run = lab.launch(
            kind, dataset, values, preset=preset, parent=parent, name=name, tags=tag or ()
        )
        if not as_json:
            typer.echo(f"run {run.id} queued: {run.url}")
        if wait:
            run.wait(progress=not as_json)
    if as_json:
        _print_json(run.data)
    elif wait:
        typer.echo(f"run {run.id} {run.status}")


@runs_app.command("wait")
def wait_for(
    run_ids: Annotated[list[int], typer.Argument(metavar="RUN...", help="Run ids.")],
    server: Server,
    token: Token = None,
    timeout: Annotated[
        float | None, typer.Option(help="Give up after this many seconds (runs go on).")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Wait for runs to finish (a progress bar each); exit 1 if one failed or was cancelled."""
    with connected(server, token) as lab:
        runs = [lab.run(run_id).wait(timeout, progress=not as_json) for run_id in run_ids]
    if as_json:
        _print_json([run.data for run in runs])
    else:
        for run in runs:
            typer.echo(f"run {run.id} {run.status}")


@runs_app.command()
def cancel(run_id: RunId, server: Server, token: Token = None, as_json: AsJson = False) -> None:
    """Cancel a queued run, or stop a running one at its next batch."""
    with connected(server, token) as lab:
        run = lab.cancel(run_id)
    if as_json:
        _print_json(run.data)
    else:
        note = " (stops at its next batch)" if run.data.get("cancel_requested") else ""
        typer.echo(f"run {run.id} {run.status}{note}")


@runs_app.command()
def download(
    run_id: RunId,
    server: Server,
    out: Annotated[Path, typer.Option("--out", "-o", file_okay=False, help="Folder to save into.")],
    token: Token = None,
    name: Annotated[list[str] | None, typer.Option(help="Only this file, repeatable.")] = None,
    as_json: AsJson = False,
) -> None:
    """Save a run's files into a folder (each checked against its SHA-256)."""
    with connected(server, token) as lab:
        paths = lab.run(run_id).download(out, name or None)
    if as_json:
        _print_json([str(path) for path in paths])
    else:
        for path in paths:
            typer.echo(str(path))
