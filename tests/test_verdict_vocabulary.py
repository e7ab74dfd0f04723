"""One verdict vocabulary: no quoted verdict value outside jobspec/verdicts.py.

Python (backend/, store/, worker/, cli/; jobspec/ but its home) compares with the members
of `jobspec.verdicts.Verdict`; templates and JS get the values from the server (the Jinja
global `Verdict` of the study and report pages, `verdicts` in the study's JSON). A dict key
or subscript that happens to be a verdict word (`data["chance"]`, the chance guard's
section) is a field name, not a verdict. Prose ("3 helped") is not a quoted value.
"""

from __future__ import annotations

import ast
import re

import pytest

from jobspec.verdicts import Verdict, vocabulary
from tests.stack import REPO_ROOT
from tests.test_vocabulary import _field_names

VALUES = frozenset(member.value for member in Verdict)
HOME = "jobspec/verdicts.py"
PYTHON_ROOTS = ("backend", "store", "worker", "cli", "jobspec")
QUOTED = re.compile(rf"""(["'`])({"|".join(sorted(VALUES))})\1""")


def _python_files():
    for root in PYTHON_ROOTS:
        for path in sorted((REPO_ROOT / root).rglob("*.py")):
            relative = path.relative_to(REPO_ROOT).as_posix()
            if relative != HOME and not relative.startswith("store/migrations/"):
                yield path


def test_no_python_module_holds_a_verdict_value_as_a_string():
    found = []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        allowed = _field_names(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in VALUES and id(node) not in allowed:
                found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {node.value!r}")
    assert found == []


@pytest.mark.parametrize(("folder", "pattern"), [("templates", "*.html"), ("static/js", "*.js")])
def test_no_template_or_script_quotes_a_verdict_value(folder, pattern):
    found = [
        f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}"
        for path in sorted((REPO_ROOT / folder).rglob(pattern))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if QUOTED.search(line)
    ]
    assert found == []


def test_the_vocabulary_names_every_member_once():
    names = vocabulary()
    assert names["names"] == {member.name: member.value for member in Verdict}
    assert set(names["words"]) == VALUES
    assert names["judged"] == [Verdict.HELPED, Verdict.HURT, Verdict.INCONCLUSIVE]
    assert Verdict.TOO_FEW.word == "too few" and Verdict.HELPED.is_answer
    assert not Verdict.INCONCLUSIVE.is_answer and Verdict.INCONCLUSIVE in Verdict.open()
