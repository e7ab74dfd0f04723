"""Shared fixtures: small demo data and one tiny pretrain run reused across tests.

Fixtures more than one test folder uses live in tests/fixtures/ and come in through
`pytest_plugins`; a folder's own fixtures sit in its conftest.py. Never import a conftest
or a fixture by hand: pytest finds them.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TestClient sends Host: testserver; the web refuses hosts it was not told about.
os.environ.setdefault("STACKLAB_ALLOWED_HOSTS", "testserver,localhost,127.0.0.1,[::1]")

pytest_plugins = ["tests.fixtures.app"]


# The longest modules (real training, real workers, browsers; by their `--durations`
# totals on 2 cores, longest first), handed out first: pytest-xdist's `--dist loadfile`
# gives modules to its processes in collection order (scripts/test turns off its
# most-tests-first reordering), so a long module collected last ran alone at the end while
# the other process sat idle. Only the order of whole modules changes; no test depends on
# it. The scheduler's modules (issue 21) are placed by what they start, not yet measured.
LONGEST_FIRST = (
    "tests/test_bench_chaos.py",
    "tests/client/test_end_to_end.py",
    "tests/ml/test_jobs.py",
    "tests/browser/test_forms.py",
    "tests/queue/test_shutdown.py",
    "tests/queue/test_one_clock.py",
    "tests/ml/test_splits.py",
    "tests/web/test_bounded_lists.py",
    "tests/cli/test_serve_stop.py",
    "tests/queue/test_full_disk.py",
    "tests/ml/test_resume.py",
    "tests/cli/test_serve_once.py",
    "tests/api/test_fuzz_schema.py",
    "tests/queue/test_worker_memory.py",
    "tests/cli/test_cli.py",
    "tests/queue/test_faults.py",
    "tests/queue/test_hostile_imports.py",
    "tests/queue/test_queue.py",
    "tests/queue/test_ablations_real_cifar.py",
    "tests/queue/test_scheduler_worker.py",
    "tests/queue/test_preemption.py",
    "tests/queue/test_scheduler_order.py",
    "tests/test_bench_scheduler.py",
    "tests/cli/test_second_machine.py",
    "tests/test_kind_contract.py",
    "tests/ml/test_pause.py",
    "tests/ml/test_purity_and_config.py",
    "tests/api/test_security.py",
    "tests/browser/test_ablation.py",
    "tests/ml/test_finetune_summary.py",
    "tests/ml/test_augment.py",
    "tests/browser/test_hardening.py",
    "tests/browser/test_dashboard.py",
    "tests/browser/test_scheduler.py",
    "tests/web/test_streaming_exports.py",
    "tests/ml/test_quick_runs.py",
    "tests/browser/test_charts_compare.py",
    "tests/browser/test_report.py",
    "tests/ml/test_decoder_output.py",
    "tests/ml/test_gpu_throughput_bench.py",
    "tests/test_bench_hostile.py",
    "tests/api/test_fuzz_stateful.py",
    "tests/ml/test_worker_memory_leak.py",
    "tests/ml/test_output_budgets.py",
    "tests/queue/test_evaluate_now.py",
    "tests/store/test_slow_writes.py",
    "tests/cli/test_serve.py",
    "tests/store/test_status_races.py",
)


def pytest_xdist_make_scheduler(config, log):
    """`--dist loadfile`, except that tests/browser is one unit: its session-wide live stack
    (the web, a training and a CPU-lane worker) and Chromium start in one test process,
    not in both."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class GroupedFiles(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "tests/browser/" if path.startswith("tests/browser/") else path

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
