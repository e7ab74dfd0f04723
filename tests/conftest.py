"""Shared fixtures: small demo data and one tiny pretrain run reused across tests.

Fixtures more than one test folder uses live in tests/fixtures/ and come in through
`pytest_plugins`; a folder's own fixtures sit in its conftest.py. Never import a conftest
or a fixture by hand: pytest finds them.
"""

from __future__ import annotations

import os
import signal

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TestClient sends Host: testserver; the web refuses hosts it was not told about.
os.environ.setdefault("STACKLAB_ALLOWED_HOSTS", "testserver,localhost,127.0.0.1,[::1]")

pytest_plugins = ["tests.fixtures.app"]


# The longest work units first, by their `--durations` totals on 2 cores (2026-12-07; a
# unit is a module, or all of tests/queue or tests/browser: pytest_xdist_make_scheduler):
# pytest-xdist's `--dist loadfile` hands units to its processes in collection order
# (scripts/test turns off its most-tests-first reordering), so a long unit collected last
# ran alone at the end while the other process sat idle. A grouped folder goes where its
# first listed module is; within it, modules keep this order. Only the order of whole
# modules changes; no test depends on it.
LONGEST_FIRST = (
    # tests/queue, one unit, ~850 s
    "tests/queue/test_ablations_real_cifar.py",
    "tests/queue/test_faults.py",
    "tests/queue/test_queue.py",
    "tests/queue/test_preemption.py",
    "tests/queue/test_scheduler_worker.py",
    "tests/queue/test_shutdown.py",
    "tests/queue/test_hostile_imports.py",
    "tests/queue/test_scheduler_order.py",
    "tests/queue/test_one_clock.py",
    "tests/queue/test_worker_memory.py",
    "tests/queue/test_full_disk.py",
    "tests/queue/test_evaluate_now.py",
    # tests/browser, one unit, ~380 s
    "tests/browser/test_ablation.py",
    "tests/browser/test_forms.py",
    "tests/browser/test_dashboard.py",
    "tests/browser/test_layout.py",
    # modules
    "tests/test_bench_chaos.py",  # 164
    "tests/client/test_end_to_end.py",  # ~100 (225 with the demo's 1,000 test images)
    "tests/cli/test_serve_once.py",  # 60
    "tests/ml/test_jobs.py",  # 56
    "tests/web/test_bounded_lists.py",  # 55
    "tests/ml/test_pause.py",  # 54
    "tests/ml/test_resume.py",  # 51
    "tests/cli/test_serve_stop.py",  # 46
    "tests/test_bench_scheduler.py",  # 40
    "tests/ml/test_splits.py",  # 36
    "tests/cli/test_second_machine.py",  # 36
    "tests/store/test_slow_writes.py",  # 29
    "tests/store/test_scheduler_fairness.py",  # 28
    "tests/api/test_fuzz_schema.py",  # 28
    "tests/ml/test_finetune_summary.py",  # 26
    "tests/test_kind_contract.py",  # 25
    "tests/test_bench_hostile.py",  # 23
    "tests/cli/test_cli.py",  # 22
    "tests/api/test_fuzz_stateful.py",  # 20
    "tests/web/test_streaming_exports.py",  # 18
    "tests/web/test_runs_table_columns.py",  # 14
    "tests/ml/test_leak_check.py",  # 14
    "tests/ops/test_webhooks.py",  # 13
    "tests/ml/test_quick_runs.py",  # 13
    "tests/api/test_hardening.py",  # 12
    "tests/ml/test_worker_memory_leak.py",  # 12
    "tests/cli/test_serve.py",  # 12
)


GROUPED = ("tests/browser/", "tests/queue/")


def pytest_xdist_make_scheduler(config, log):
    """`--dist loadfile`, except that tests/browser and tests/queue are a unit each: the
    browser's session-wide live stack (the web, a training and a CPU-lane worker) and
    Chromium, and the queue's two stacks (three workers each, tests/queue/conftest.py),
    start in one test process, not in both."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class GroupedFiles(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return next((unit for unit in GROUPED if path.startswith(unit)), path)

    return GroupedFiles(config, log)


def pytest_collection_modifyitems(config, items):
    """The longest modules first (LONGEST_FIRST); STACKLAB_TEST_TIMEOUT_SCALE stretches
    pytest-timeout's safety net with every wait, unless `--timeout` names one."""
    from tests.stack import TIMEOUT_SCALE

    rank = {module: index for index, module in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.partition("::")[0], len(rank)))  # stable

    if TIMEOUT_SCALE == 1 or config.getoption("timeout", None) is not None:
        return
    limit = float(config.getini("timeout") or 0) * TIMEOUT_SCALE
    for item in items:
        if limit and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(limit))


# What a test must leave as it found it: the process's own Ctrl-C and SIGTERM handlers and
# the variables that choose the stack. A test (or the product code it calls in process)
# that leaves one changed breaks a later test of the same test process, which xdist picks
# by chance, so on another machine another test fails; this fails the test that changed it.
WATCHED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _watched_environment() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if key.startswith("STACKLAB_") or key in ("DATABASE_URL", "REDIS_URL")
    }


@pytest.fixture(autouse=True)
def process_state_kept():
    """Fails a test that leaves a signal handler or a stack variable changed behind it (a
    package or module fixture's environment is in place before and after each of its tests,
    so it is not counted)."""
    handlers = {sig: signal.getsignal(sig) for sig in WATCHED_SIGNALS}
    environment = _watched_environment()
    yield
    left = {sig.name for sig in WATCHED_SIGNALS if signal.getsignal(sig) != handlers[sig]}
    for sig in WATCHED_SIGNALS:  # put back, so one leak fails one test, not every later one
        signal.signal(sig, handlers[sig])
    now = _watched_environment()
    changed = sorted(k for k in {*environment, *now} if environment.get(k) != now.get(k))
    for key in changed:
        if key in environment:
            os.environ[key] = environment[key]
        else:
            os.environ.pop(key, None)
    assert not left, f"this test left its own handler for {', '.join(sorted(left))} installed"
    assert not changed, f"this test left these variables changed: {', '.join(changed)}"


@pytest.fixture(scope="session")
def demo_small():
    """400 train / 100 test demo images: enough to learn something in seconds."""
    from worker.ml.datasets.demo import make_demo

    return make_demo(seed=0, n_train=400, n_test=100)


@pytest.fixture(scope="session")
def pretrained_dir(tmp_path_factory, demo_small):
    """One quick layer-wise pretrain (1 epoch a stage), shared by the finetune tests."""
    from jobspec.params import PretrainConfig, StageConfig
    from worker.ml.pretrain import pretrain

    out = tmp_path_factory.mktemp("pretrain")
    stage = StageConfig(kernel_size=3, epochs=1, batch_size=32)
    config = PretrainConfig(ae01=stage, ae02=stage, ae03=stage, bn_momentum=0.9)
    pretrain(demo_small, config, out_dir=out)
    return out
