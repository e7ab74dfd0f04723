"""The lock files and pyproject.toml agree (README "Set-up"; scripts/lock makes the locks).

Read without resolving anything: every direct dependency of pyproject.toml, and of each
extra, is in the locks at a version its specifier allows and under the same platform
markers; the three locks pin shared packages alike; each lock carries the digest of the
pyproject inputs it was made from. Where uv and its cache are at hand, the compiler is also
re-run offline and must write the very same file.
"""

from __future__ import annotations

import itertools
import re
import runpy
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.stack import REPO_ROOT

LOCKS = {  # lock file -> the extras of pyproject it holds
    "requirements.lock": (),
    "requirements-test.lock": ("test",),
    "requirements-gpu.lock": ("gpu",),
}
LINE = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;]+)\s*"
    r"(?:;\s*(?P<marker>[^#]+?))?\s*(?:#\s*via\s*(?P<via>.*))?$"
)
# The environments markers are compared in: every machine, system and Python pyproject allows.
ENVIRONMENTS = [
    {"platform_machine": m, "sys_platform": s, "python_version": v, "python_full_version": f"{v}.5"}
    for m, s, v in itertools.product(
        ("x86_64", "AMD64", "aarch64", "arm64"), ("linux", "darwin", "win32"), ("3.11", "3.12")
    )
]
_lock_inputs = runpy.run_path(str(REPO_ROOT / "scripts" / "lock_inputs.py"))


@dataclass(frozen=True)
class Pin:
    """One line of a lock: the version, its marker, and whether only pyproject needs it."""

    version: str
    marker: Marker | None
    direct_only: bool  # `# via` names nothing but pyproject (and constraint files)


def parse_lock(text: str) -> dict[str, Pin]:
    """package -> its pin; fails on a line that is not a pin."""
    pins: dict[str, Pin] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = LINE.match(line)
        assert match, f"not a pinned requirement: {line!r}"
        via = [v.strip() for v in (match["via"] or "").split(",") if v.strip()]
        direct_only = all(v.startswith("-c ") or v.endswith("(pyproject.toml)") for v in via)
        marker = Marker(match["marker"]) if match["marker"] else None
        name = canonicalize_name(match["name"])
        assert name not in pins, f"{name} is pinned twice"
        pins[name] = Pin(match["version"], marker, direct_only)
    return pins


def holds(marker: Marker | None, env: dict[str, str]) -> bool:
    return marker is None or marker.evaluate(env)


def marker_problem(pin: Pin, wanted: list[Marker | None]) -> str | None:
    """Where the lock's marker leaves out an environment pyproject asks the package in, or
    (when only pyproject needs it) adds one it does not."""
    for env in ENVIRONMENTS:
        asked = any(holds(marker, env) for marker in wanted)
        locked = holds(pin.marker, env)
        if (asked and not locked) or (locked and not asked and pin.direct_only):
            return f"the lock's marker is {pin.marker}, wrong for {env}"
    return None


def direct_requirements(extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + [
        req for extra in extras for req in project["optional-dependencies"][extra]
    ]
    return [Requirement(line) for line in lines]


def mismatches(pins: dict[str, Pin], reqs: list[Requirement]) -> list[str]:
    """What in `reqs` the pins miss, pin outside the specifier, or guard by other markers."""
    found = []
    markers: dict[str, list[Marker | None]] = {}
    for req in reqs:
        markers.setdefault(canonicalize_name(req.name), []).append(req.marker)
    for req in reqs:
        pin = pins.get(canonicalize_name(req.name))
        if pin is None:
            found.append(f"{req}: not in the lock")
            continue
        if not req.specifier.contains(pin.version, prereleases=True):
            found.append(f"{req}: the lock pins {pin.version}")
        if problem := marker_problem(pin, markers[canonicalize_name(req.name)]):
            found.append(f"{req}: {problem}")
    return found


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_direct_dependency_is_locked_at_its_pinned_version(lock):
    pins = parse_lock((REPO_ROOT / lock).read_text())
    bad = mismatches(pins, direct_requirements(LOCKS[lock]))
    assert not bad, f"{lock} disagrees with pyproject.toml (run scripts/lock):\n" + "\n".join(bad)


def test_pyproject_pins_its_direct_dependencies_exactly():
    loose = [str(r) for r in direct_requirements(("test", "gpu")) if len(r.specifier) != 1
             or next(iter(r.specifier)).operator != "=="]  # fmt: skip
    assert not loose, f"pin these with == (the locks pin the rest): {loose}"


def test_the_locks_pin_shared_packages_alike():
    locks = {lock: parse_lock((REPO_ROOT / lock).read_text()) for lock in LOCKS}
    runtime = locks["requirements.lock"]
    for lock, pins in locks.items():
        missing = sorted(set(runtime) - set(pins))
        assert not missing, f"{lock} lacks {missing}"
        differ = [
            f"{n}: {runtime[n].version} vs {pins[n].version}"
            for n in runtime
            if pins[n].version != runtime[n].version
        ]
        assert not differ, f"{lock} differs from requirements.lock: {differ}"


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_each_lock_was_made_by_scripts_lock_from_this_pyproject(lock):
    header = (REPO_ROOT / lock).read_text().splitlines()[:3]
    assert header[1].strip() == "#    scripts/lock", header
    digest = _lock_inputs["inputs_digest"](REPO_ROOT / "pyproject.toml")
    assert header[2] == _lock_inputs["STAMP"] + digest, (
        f"{lock} was made from other pyproject.toml inputs: run scripts/lock"
    )


def test_a_disagreeing_lock_is_caught():
    pins = parse_lock(
        "keras==3.0.0\n"
        "tensorflow-cpu==2.21.0 ; platform_machine == 'x86_64'  # via stacklab (pyproject.toml)\n"
        "tensorflow==2.21.0  # via stacklab (pyproject.toml)\n"
        "scipy==1.17.1  # via scikit-learn, stacklab (pyproject.toml)\n"
    )
    x86 = "platform_machine == 'x86_64' or platform_machine == 'AMD64'"
    reqs = [
        Requirement("keras==3.15.1"),
        Requirement(f"tensorflow-cpu==2.21.0; {x86}"),
        Requirement("tensorflow==2.21.0; platform_machine != 'x86_64'"),
        Requirement(f"scipy==1.17.1; {x86}"),  # wider in the lock: something else needs it
        Requirement("numpy==2.4.6"),
    ]
    found = sorted(mismatches(pins, reqs))
    assert [line.split(":")[0] for line in found] == [
        "keras==3.15.1",
        "numpy==2.4.6",
        'tensorflow-cpu==2.21.0; platform_machine == "x86_64" or platform_machine == "AMD64"',
        'tensorflow==2.21.0; platform_machine != "x86_64"',
    ]
    assert "the lock pins 3.0.0" in found[0] and "not in the lock" in found[1]
    assert "'AMD64'" in found[2] and "'x86_64'" in found[3]  # the environment it is wrong in
    with pytest.raises(AssertionError, match="not a pinned requirement"):
        parse_lock("keras>=3\n")


def test_the_compiler_writes_the_same_locks_offline(tmp_path: Path):
    """scripts/lock again, from uv's cache only: no pin may change. Skipped without uv or
    with a cold cache (run scripts/lock once where PyPI is reachable)."""
    if shutil.which("uv") is None:
        pytest.skip("uv is not installed (python3 -m pip install uv)")
    for name in ("pyproject.toml", *LOCKS, "scripts/lock", "scripts/lock_inputs.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    done = subprocess.run(
        ["bash", "scripts/lock", "--offline"], cwd=tmp_path, capture_output=True, text=True
    )
    if done.returncode and re.search(r"offline|network|cache", done.stderr, re.I):
        pytest.skip(f"uv's cache lacks what the locks need: {done.stderr.strip()[-300:]}")
    assert done.returncode == 0, done.stderr
    for lock in LOCKS:  # compared as pins: another uv version may lay the file out otherwise
        again = parse_lock((tmp_path / lock).read_text())
        assert again == parse_lock((REPO_ROOT / lock).read_text()), f"{lock}: run scripts/lock"
