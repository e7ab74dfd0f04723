"""One status vocabulary: no quoted status name outside jobspec/status.py.

Every value of every enum in jobspec.status (run statuses, attempt outcomes, import states
and phases) is a status name. Python (backend/, store/, worker/, jobspec/, cli/, bench/,
docs/; not the migrations: history, each freezes its values) may not hold one as a string
value, nor quote one inside a string (an SQL `'queued'`): it uses the enum's member or
group. Templates and JS may not quote one at all: they get the vocabulary from the server
(Jinja globals, `dom.status`).

Allowed, because they are not status values: a field name (a dict display's key, a
subscript, `.get("cancelled")`: e.g. the boolean `cancelled` of a stored training result),
and a member of another enum that happens to share a word (`RecallChange.LOST`). Prose that
contains a status word ("3 runs cancelled") is not a quoted name.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path

from jobspec import status
from tests.stack import REPO_ROOT

# bench/ and docs/ too: their scripts drive the app and wait on its statuses.
PYTHON_ROOTS = ("backend", "store", "worker", "jobspec", "cli", "client", "bench", "docs")
FRONT_END = (("templates", "*.html"), ("static/js", "*.js"))
HISTORY = re.compile(r"store/migrations/versions/")  # history: frozen literals, by design
HOME = "jobspec/status.py"
NAMES = frozenset(
    member.value
    for enum in vars(status).values()
    if isinstance(enum, type) and issubclass(enum, StrEnum) and enum is not StrEnum
    for member in enum
)
ALTERNATION = "|".join(sorted(NAMES))
QUOTED = re.compile(rf"""(["'`])({ALTERNATION})\1""")  # JS quotes with backticks too
SQL_QUOTED = re.compile(rf"""(["'])({ALTERNATION})\1""")  # `name` in a docstring is a field
KEY_CALLS = frozenset({"get", "pop", "setdefault"})


def _python_files() -> Iterator[Path]:
    for root in PYTHON_ROOTS:
        for path in sorted((REPO_ROOT / root).rglob("*.py")):
            relative = path.relative_to(REPO_ROOT).as_posix()
            if relative != HOME and not HISTORY.match(relative):
                yield path


def _field_names(tree: ast.AST) -> set[int]:
    """ids of string constants that name a field or define another enum's member."""
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            allowed.update(id(key) for key in node.keys if key is not None)
        elif isinstance(node, ast.Subscript):
            allowed.add(id(node.slice))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in KEY_CALLS:
                allowed.add(id(node.args[0]))
        elif isinstance(node, ast.ClassDef) and any(
            isinstance(b, ast.Name) and b.id.endswith("Enum") for b in node.bases
        ):
            allowed.update(id(stmt.value) for stmt in node.body if isinstance(stmt, ast.Assign))
    return allowed


def python_literals(path: Path) -> list[str]:
    """Each status name the file holds as a string value or quotes inside a string."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    allowed = _field_names(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        if node.value in NAMES and id(node) not in allowed:
            found.append(f"{node.lineno}: {node.value!r}")
        found.extend(f"{node.lineno}: {m.group(0)}" for m in SQL_QUOTED.finditer(node.value))
    return found


def front_end_literals(path: Path) -> list[str]:
    """Each quoted status name in a template or a script."""
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        found.extend(f"{number}: {m.group(0)}" for m in QUOTED.finditer(line))
    return found


def _report(hits: dict[Path, list[str]]) -> str:
    return "\n".join(
        f"{path.relative_to(REPO_ROOT)}:{hit}" for path, found in hits.items() for hit in found
    )


def test_the_vocabulary_has_the_names_this_test_looks_for():
    assert {"queued", "running", "succeeded", "failed", "cancelled"} <= NAMES
    assert {"lost", "interrupted", "done", "pending"} <= NAMES


def test_no_python_module_spells_a_status_name():
    hits = {path: found for path in _python_files() if (found := python_literals(path))}
    assert not hits, "use jobspec.status instead of:\n" + _report(hits)


def test_no_template_or_script_spells_a_status_name():
    hits = {
        path: found
        for root, pattern in FRONT_END
        for path in sorted((REPO_ROOT / root).rglob(pattern))
        if (found := front_end_literals(path))
    }
    assert not hits, "use the RunStatus globals or dom.status instead of:\n" + _report(hits)


def test_the_scanner_sees_what_it_must_and_lets_field_names_be(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from enum import StrEnum\n"
        "class Verb(StrEnum):\n    LOST = 'lost'\n"
        "a = run.status == 'running'\n"
        "b = text(\"state IN ('queued', 'running')\")\n"
        "c = {'status': 'failed', 'cancelled': True}\n"
        "d = result['cancelled'] or result.get('cancelled')\n"
        "e = 'the run was cancelled'\n"
    )
    found = [hit.split(": ", 1)[1] for hit in python_literals(sample)]
    assert found == ["'running'", "'queued'", "'running'", "'failed'"]
    script = tmp_path / "page.js"
    script.write_text('if (run.status === "running") show(`badge ${run.status}`);\n')
    assert front_end_literals(script) == ['1: "running"']


def test_the_groups_partition_the_statuses_and_moves_follow_them():
    from jobspec.status import AttemptOutcome, ImportPhase, ImportState, RunStatus

    active, finished = set(RunStatus.active()), set(RunStatus.finished())
    assert active | finished == set(RunStatus) and not active & finished
    assert set(RunStatus.stopped()) < finished
    assert all(member.is_active != member.is_finished for member in RunStatus)
    assert RunStatus.QUEUED.can_move_to(RunStatus.RUNNING)
    assert not RunStatus.SUCCEEDED.can_move_to(RunStatus.QUEUED)
    assert all(RunStatus.QUEUED in RunStatus.transitions()[s] for s in RunStatus.stopped())
    assert {AttemptOutcome.of_run(s) for s in finished} <= set(AttemptOutcome.ended())
    assert [s.phase for s in ImportState] == [
        ImportPhase.PENDING,
        ImportPhase.PENDING,
        ImportPhase.DONE,
        ImportPhase.FAILED,
    ]


def test_dom_js_reads_every_part_of_the_vocabulary_the_server_sends():
    dom_js = (REPO_ROOT / "static" / "js" / "dom.js").read_text(encoding="utf-8")
    for key in status.vocabulary():
        assert f"v.{key}" in dom_js, key
    base = (REPO_ROOT / "templates" / "base.html").read_text(encoding="utf-8")
    assert 'id="status-vocabulary">{{ status_vocabulary|tojson }}' in base


def test_trial_states_are_optunas_by_name_and_the_study_page_reads_them():
    """Optuna's trial states are a vocabulary of their own, mirrored once (the web does not
    import Optuna to read a stored one)."""
    import optuna

    from jobspec.status import TrialState

    assert {state.name.lower() for state in optuna.trial.TrialState} == set(TrialState)
    assert all(TrialState.of(state).name == state.name for state in optuna.trial.TrialState)
    assert TrialState.COMPLETE in NAMES and TrialState.PRUNED in NAMES  # scanned as statuses
