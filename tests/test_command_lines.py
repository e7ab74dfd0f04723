"""Process command lines obey the house plan too: a room may start a process of another
room's module only where it could import that module (tests/test_imports.py, BOUNDARIES).

Starting `python -m worker.x` from the web would dodge the import check while tying the web
to the worker just the same, so every string in the code that names a project module as a
process to run counts like an import: a dotted module name or a `module:attribute` app spec
(`"worker.celery_app"`, `"backend.main:app"`), the word after `-m`/`-A`/`--app` in a command
string or list, and `from X`/`import X` inside a `-c` snippet. Docstrings are left out.
A job kind's `entry="module:function"` is not run by the room declaring it but imported by
the worker (`worker/jobs.py`), so it must name a module the worker may import.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from tests.test_imports import PACKAGES, may_use, project_files

FLAGS = ("-m", "-A", "--app")
ENTRY_KEYWORD, ENTRY_RESOLVER = "entry", "worker.jobs"  # JobKind(entry=...), loaded there
_DOTTED = re.compile(r"([A-Za-z_]\w*(?:\.\w+)+)(?::\w+)?")
_FLAG_IN_TEXT = re.compile(r"(?:^|\s)(?:-m|-A|--app)[\s=]+([A-Za-z_][\w.]*)")
_CODE_IMPORT = re.compile(r"\b(?:from|import)\s+([A-Za-z_][\w.]*)")
_APP_IN_TEXT = re.compile(r"(?:^|\s)([A-Za-z_][\w.]*):[A-Za-z_]\w*\b")


@dataclass(frozen=True)
class Named:
    """A project module named in a string of another module's code."""

    source: str  # the module that will import or start it
    target: str
    line: int


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            found.add(id(first.value))
    return found


def modules_in_text(text: str) -> list[str]:
    """Project modules a string names as something to run."""
    names = [m.group(1)] if (m := _DOTTED.fullmatch(text)) else []
    names += _FLAG_IN_TEXT.findall(text) + _CODE_IMPORT.findall(text)
    names += _APP_IN_TEXT.findall(text) if " " in text else []
    return [name for name in names if name.split(".")[0] in PACKAGES]


def _after_flags(node: ast.List | ast.Tuple) -> list[str]:
    pairs = zip(node.elts, node.elts[1:], strict=False)
    return [
        after.value
        for flag, after in pairs
        if isinstance(flag, ast.Constant)
        and flag.value in FLAGS
        and isinstance(after, ast.Constant)
        and isinstance(after.value, str)
        and after.value.split(".")[0] in PACKAGES
    ]


def named_modules(source: str, code: str) -> list[Named]:
    """Every project module the code of `source` names in a string outside a docstring."""
    tree = ast.parse(code)
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == ENTRY_KEYWORD:
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                docstrings.add(id(node.value))  # not a command line: the worker loads it
                for name in modules_in_text(node.value.value):
                    found.append(Named(ENTRY_RESOLVER, name, node.value.lineno))
        elif isinstance(node, (ast.List, ast.Tuple)):
            found += [Named(source, name, node.lineno) for name in _after_flags(node)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            texts = [] if id(node) in docstrings else [node.value]
            found += [Named(source, n, node.lineno) for t in texts for n in modules_in_text(t)]
    return list(dict.fromkeys(found))  # a flag list's constant is also seen on its own


def test_command_lines_name_only_modules_their_room_may_use():
    bad = [
        f"{named.source}:{named.line} starts {named.target}"
        for module, path in project_files().items()
        for named in named_modules(module, path.read_text())
        if not may_use(named.source, named.target)
    ]
    assert not bad, "\n".join(bad)


def test_the_cli_is_where_the_web_and_the_worker_are_started():
    named = {
        (n.source, n.target)
        for module, path in project_files().items()
        for n in named_modules(module, path.read_text())
    }
    assert ("cli.processes", "backend.main") in named
    assert ("cli.processes", "worker.celery_app") in named


def test_a_web_module_starting_a_worker_process_is_caught():
    code = (
        '"""Docstrings may say python -m worker.tasks."""\n'
        "import sys\n"
        'CMD = [sys.executable, "-m", "worker.import_sandbox"]\n'
        'APP = "cli.processes:web_command"\n'
        'SHELL = "celery -A worker.celery_app worker"\n'
        'WEB = "uvicorn cli.main:app --port 1"\n'
        'SNIPPET = [sys.executable, "-c", "from worker.jobs import run; run()"]\n'
    )
    named = named_modules("backend.runs.pages", code)
    assert sorted({n.target for n in named}) == [
        "cli.main",
        "cli.processes",
        "worker.celery_app",
        "worker.import_sandbox",
        "worker.jobs",
    ]
    assert not any(may_use(n.source, n.target) for n in named)
    assert named_modules("worker.tasks", '"""python -m backend.main"""\n') == []


def test_a_kind_whose_entry_the_worker_may_not_import_is_caught():
    code = 'register(JobKind(name="toy", entry="backend.toy:run"))\n'
    named = named_modules("jobspec.toy", code)
    assert named == [Named(ENTRY_RESOLVER, "backend.toy", 1)]
    assert not may_use(named[0].source, named[0].target)
    fine = named_modules("jobspec.toy", 'JobKind(name="toy", entry="worker.entries:toy")\n')
    assert all(may_use(n.source, n.target) for n in fine)


def test_serve_compose_and_the_image_start_the_web_with_the_same_edges():
    """h11 with the header limits and no uvicorn-level forwarded headers, everywhere the web
    is started (docs/security-web.md, "The server's edges")."""
    import json

    import yaml

    from cli.processes import WEB_APP, WEB_FLAGS, web_command
    from tests.stack import REPO_ROOT

    def flags(words: list[str]) -> list[str]:
        return words[words.index(WEB_APP) + 1 :]

    served = web_command("0.0.0.0", 8000)
    assert served[1:4] == ["-m", "uvicorn", WEB_APP]
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    image = (REPO_ROOT / "Dockerfile").read_text().split("\nCMD ", 1)[1].splitlines()[0]
    for words in (compose["services"]["web"]["command"].split(), json.loads(image)):
        assert words[0] == "uvicorn" and flags(words) == flags(served)
    assert set(WEB_FLAGS) <= set(served) and "--proxy-headers" not in served
