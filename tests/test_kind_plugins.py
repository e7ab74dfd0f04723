"""Kinds plug in: every registered kind's worker entry point resolves to a function of
(its params, JobContext) -> JobOutcome; a kind registers from outside the package through
STACKLAB_KIND_MODULES; and no code outside the registry asks a kind by its name (the
count of quoted kind names is 0 in Python, templates and JS)."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from jobspec import kinds, stages
from jobspec.outcome import JobOutcome

REPO = Path(__file__).resolve().parents[1]
# Where a kind's name may not be written: every layer but the registry (jobspec/), the
# command line included (it names a kind's summary, folder or section by `KIND.name`).
SCANNED = ("backend", "store", "worker", "cli", "templates", "static/js")
SUFFIXES = {".py", ".html", ".js"}


@pytest.fixture
def toy():
    """tests/toykind.py, its kind registered for one test (importing it registers it)."""
    import tests.toykind as module

    if module.NAME not in kinds.names():
        kinds.register(module.SHEEP_COUNT)
    yield module
    kinds.unregister(module.NAME)


# Migrations are history: each freezes the names it needs as literals (a migration imports
# nothing of the project: tests/store/test_status_checks.py), so they are not scanned here.
HISTORY = "store/migrations/versions/"


def literal_kind_names(names: tuple[str, ...]) -> dict[str, list[str]]:
    """file -> lines that quote a registered kind's name, in the scanned folders."""
    alternatives = "|".join(re.escape(name) for name in names)
    quoted = re.compile(rf"""["']({alternatives})["']""")
    found: dict[str, list[str]] = {}
    for top in SCANNED:
        for path in sorted((REPO / top).rglob("*")):
            rel = path.relative_to(REPO).as_posix()
            if path.suffix not in SUFFIXES or "__pycache__" in rel or rel.startswith(HISTORY):
                continue
            hits = [
                f"{number}: {line.strip()}"
                for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
                if quoted.search(line)
            ]
            if hits:
                found[rel] = hits
    return found


def test_no_layer_asks_a_kind_by_its_name():
    found = literal_kind_names(kinds.names())
    assert not found, json.dumps(found, indent=1)


def test_each_builtin_kind_has_a_command_of_its_name():
    """The CLI's training commands are named by their functions, so `--help` loads no
    pydantic; a kind renamed without its command (or the other way round) fails here."""
    import typer.main

    from cli.main import app
    from jobspec.builtin_kinds import FINETUNE, PRETRAIN, TUNE

    commands = typer.main.get_group(app).commands
    assert {PRETRAIN.name, TUNE.name, FINETUNE.name} <= set(commands)


def test_the_count_sees_a_branch_on_a_kind_name(tmp_path, monkeypatch):
    """The scanner itself: a planted comparison is found (so 0 above means 0)."""
    planted = tmp_path / "backend" / "planted.py"
    planted.parent.mkdir()
    planted.write_text('if run.kind == "finetune":\n    pass\n')
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert literal_kind_names(kinds.names()) == {
        "backend/planted.py": ['1: if run.kind == "finetune":']
    }


@pytest.mark.parametrize("name", kinds.names())
def test_every_kind_has_an_entry_point_taking_its_params(name):
    from worker import jobs

    kind = kinds.get(name)
    function = jobs.entry_point(kind)
    hints = typing.get_type_hints(function)
    config, context = list(hints.values())[:2]
    assert (config, context, hints["return"]) == (kind.params, jobs.JobContext, JobOutcome)


def test_a_bad_entry_point_is_refused_when_resolved(toy):
    from worker import jobs

    for entry, error in [
        ("worker.entries:missing", AttributeError),
        ("jobspec.kinds:TASK_PREFIX", TypeError),  # not callable
        ("jobspec.kinds:names", TypeError),  # takes no (config, context)
    ]:
        with pytest.raises(error):
            jobs.entry_point(dataclasses.replace(toy.SHEEP_COUNT, entry=entry))


def test_a_kind_registers_from_outside_the_package_in_any_process():
    """STACKLAB_KIND_MODULES is read when the registry is first read: the web, the worker's
    task list and its queue all know the plug-in's kind."""
    code = (
        "import json; import worker.tasks; from worker.celery_app import app;"
        "from jobspec import kinds;"
        "print(json.dumps([kinds.names(), sorted(app.tasks)]))"
    )
    env = {"PATH": "/usr/bin:/bin", kinds.PLUGIN_ENV: "tests.toykind"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    names, tasks = json.loads(out.stdout.strip().splitlines()[-1])
    assert names[-1] == "sheepcount" and "stacklab.sheepcount" in tasks
    assert names[:3] == ["pretrain", "tune", "finetune"]  # the built-ins first


def test_a_kind_declares_what_other_layers_need_with_safe_defaults(toy):
    """A kind with only a name, a model and an entry: no split, one model per stage, no
    memory estimate, no trials, a plain page; its plan is {} until it declares one."""
    SheepCountConfig = toy.SheepCountConfig  # noqa: N806
    bare = kinds.JobKind(name="bare", params=SheepCountConfig, entry="tests.toykind_job:count")
    config = SheepCountConfig(sheep=4)
    assert bare.stage_plan({"sheep": 4}) == {} and bare.total_epochs(config) == 0
    assert bare.stage_images(config, "count", n_train=100) == (100, 0)
    assert bare.rate_model(config, "count") == "count"
    assert bare.default_rate("count") == kinds.FALLBACK_RATE
    assert (bare.batch_memory_mb(config), bare.trials(config)) == (0.0, None)
    assert bare.features == kinds.Features() and not bare.features.experiment_root
    assert bare.config({"sheep": 0}) is None  # stored params that no longer validate


def stage_literals(path: Path) -> list[str]:
    """Stage names written as strings in a Python file's code (docstrings and the keys of
    dict literals, which name JSON fields such as a result's "trial", aside)."""
    names = {*stages.STAGES, stages.FINETUNE_STAGE, stages.TRIAL_STAGE}
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            skip.add(id(body[0].value))  # a docstring
        if isinstance(node, ast.Dict):
            skip.update(id(key) for key in node.keys if key is not None)
    return [
        f"{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in names and id(node) not in skip
    ]


def test_stage_names_are_constants_of_jobspec_stages():
    found = {}
    for top in ("backend", "store", "worker", "cli"):
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel.startswith(HISTORY):
                continue
            if hits := stage_literals(path):
                found[rel] = hits
    assert not found, json.dumps(found, indent=1)
