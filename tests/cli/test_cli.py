"""Tests for the stacklab command line: help, data commands, option errors, a tiny workflow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import configs
from cli.errors import CliError
from cli.main import app

REPO_ROOT = Path(__file__).parents[2]
COMMANDS = [
    [], ["pretrain"], ["tune"], ["finetune"], ["evaluate"], ["demo"],
    ["data"], ["data", "import"], ["data", "info"],
]  # fmt: skip

runner = CliRunner()


def invoke(*args: str | Path):
    """Run the app in-process with string arguments."""
    return runner.invoke(app, [str(a) for a in args])


def write_npz(path: Path, *, dtype: str = "uint8") -> Path:
    """A 3-class dataset file of random images: 30 train, 9 test."""
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.integers(0, 256, (30, 32, 32, 3)).astype(dtype),
        y_train=np.arange(30) % 3,
        x_test=rng.integers(0, 256, (9, 32, 32, 3)).astype(dtype),
        y_test=np.arange(9) % 3,
    )
    return path


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "stacklab")
def test_every_command_has_help(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_help_does_not_import_tensorflow():
    code = (
        "import sys; from typer.testing import CliRunner; from cli.main import app; "
        "r = CliRunner().invoke(app, ['finetune', '--help']); assert r.exit_code == 0; "
        "print(sorted(m for m in ('keras', 'tensorflow', 'optuna') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"  # so it answers at once, without TensorFlow's start-up


def test_data_import_saves_and_info_describes(tmp_path):
    target = tmp_path / "out" / "mini.npz"
    result = invoke("data", "import", write_npz(tmp_path / "src.npz"), "--out", target,
                    "--name", "mini")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert target.is_file()
    assert "mini" in result.output and "30 train / 9 test" in result.output
    info = invoke("data", "info", target)
    assert info.exit_code == 0, info.output
    counts = [line.split() for line in info.output.splitlines() if line.startswith(("0 ", "1 "))]
    assert counts == [["0", "10", "3"], ["1", "10", "3"]]


def test_data_import_refuses_float_images_in_one_line(tmp_path):
    result = invoke("data", "import", write_npz(tmp_path / "f.npz", dtype="float32"),
                    "--out", tmp_path / "x.npz")  # fmt: skip
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "dtype" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["pretrain", "--kernel-size", "4"], "--kernel-size (ae01, ae02, ae03)"),
        (["pretrain", "--epochs", "5,0,5"], "--epochs (ae02)"),
        (["pretrain", "--optimizer", "foo"], "--optimizer"),
        (["pretrain", "--batch-size", "32,64"], "--batch-size"),
        (["tune", "--kernel-sizes", "3,4"], "--kernel-sizes"),
        (["tune", "--stage", "ae03"], "--pretrained"),
        (["finetune", "--encoder", "stacked"], "--pretrained"),
        (["finetune", "--encoder", "deep"], "--encoder"),
        (["finetune", "--encoder", "scratch", "--augment", "--aug", "zoom_range=2"], "--aug zoom"),
        (["finetune", "--encoder", "scratch", "--aug", "zoom_range=0.2"], "--aug: has no effect"),
        (["finetune", "--encoder", "scratch", "--monitor", "accuracy"], "--monitor"),
        (["pretrain", "--data", "no-such-data.npz"], "--data"),
        (["evaluate", "--model", "missing.keras"], "--model"),
    ],
)
def test_bad_option_is_refused_naming_it(args, named, tmp_path):
    extra = [] if "--data" in args else ["--data", "demo"]
    result = invoke(*args, *extra, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"Error: {named}")
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["pretrain", "tune", "finetune"])
def test_option_defaults_are_the_config_defaults(command, monkeypatch, tmp_path):
    from jobspec import params as ml_config

    seen = {}

    def capture(model, data):
        seen["config"] = model.model_validate(data)
        raise CliError("captured")

    monkeypatch.setattr(configs, "validated", capture)
    extra = ["--encoder", "stacked"] if command == "finetune" else []
    invoke(command, "--data", "demo", "--out", tmp_path, *extra)
    expected = {"pretrain": ml_config.PretrainConfig, "tune": ml_config.TuneConfig,
                "finetune": ml_config.FinetuneConfig}[command]()  # fmt: skip
    assert seen["config"] == expected


def test_first_ctrl_c_stops_at_next_batch_second_aborts():
    from cli.progress import TqdmReporter

    # Python's own Ctrl-C, as a command line starts with, whatever this test process ran
    # before (its earlier tests may have installed and restored handlers of their own).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with TqdmReporter(disable=True) as reporter:
            assert not reporter.should_stop()
            os.kill(os.getpid(), signal.SIGINT)
            assert reporter.should_stop()
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    finally:
        signal.signal(signal.SIGINT, previous)


def read_summary(folder: Path) -> dict:
    """summary.json of a command's output folder."""
    return json.loads((folder / "summary.json").read_text())


@pytest.mark.slow
def test_pretrain_finetune_evaluate_on_a_demo_subset(tmp_path):
    data = ["--data", "demo", "--train-limit", "120", "--test-limit", "40"]
    quick = ["--epochs", "1", "--batch-size", "32", "--bn-momentum", "0.9"]
    pre, fine, scored = tmp_path / "pre", tmp_path / "fine", tmp_path / "eval"

    result = invoke("pretrain", *data, *quick, "--kernel-size", "3,5,3", "--out", pre)
    assert result.exit_code == 0, result.output
    summary = read_summary(pre)
    assert {"stacked_ae.keras", "ae03.weights.h5", "pretrain.json"} <= set(summary["files"])
    assert summary["dataset"]["n_train"] == 120

    result = invoke("finetune", *data, *quick, "--encoder", "stacked", "--pretrained", pre,
                    "--out", fine)  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = read_summary(fine)
    assert summary["training"]["epochs_run"] == 1
    assert summary["training"]["pretrained_layers"] > 0
    assert 0.0 <= summary["evaluation"]["accuracy"] <= 1.0
    assert "test accuracy" in result.output

    model = fine / "classifier.keras"
    result = invoke("evaluate", "--model", model, *data[:2], *data[4:], "--out", scored)
    assert result.exit_code == 0, result.output
    assert (scored / "evaluation.json").is_file() and (scored / "confusion_matrix.png").is_file()
    assert read_summary(scored)["evaluation"] == pytest.approx(summary["evaluation"])


def test_demo_pretrains_then_finetunes_plain_and_augmented(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from cli import jobs

    calls = []

    def fake_pretrain(dataset, config, out_dir):
        calls.append(("pretrain", out_dir.name, config.ae01.epochs))
        stage = {"epochs_run": 2, "seconds": 1.0, "final": {"loss": 0.1, "val_loss": 0.2}}
        stages = dict.fromkeys(("ae01", "ae02", "ae03"), stage)
        return SimpleNamespace(cancelled=False, test_reconstruction_loss=0.05, stages=stages,
                               files=[]), 3.0  # fmt: skip

    def fake_finetune(dataset, config, out_dir, pretrained):
        calls.append(("finetune", out_dir.name, config.augment, pretrained.name))
        training = {"epochs_run": 4, "best_epoch": 3, "best_value": 1.5, "monitor": "val_loss"}
        scores = SimpleNamespace(accuracy=0.5, balanced_accuracy=0.25 if config.augment else 0.5)
        return SimpleNamespace(cancelled=False, training=training, evaluation=scores,
                               files=[]), 2.0  # fmt: skip

    monkeypatch.setattr(jobs, "pretrain", fake_pretrain)
    monkeypatch.setattr(jobs, "finetune", fake_finetune)
    result = invoke("demo", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert calls == [
        ("pretrain", "pretrain", 2),
        ("finetune", "finetune-plain", False, "pretrain"),
        ("finetune", "finetune-augment", True, "pretrain"),
    ]
    rows = [line.split() for line in result.output.splitlines() if line.startswith("finetune-")]
    assert rows == [
        ["finetune-plain", "0.5000", "0.5000", "3", "4", "2", "s"],
        ["finetune-augment", "0.5000", "0.2500", "3", "4", "2", "s"],
    ]
    summary = read_summary(tmp_path)
    assert summary["dataset"]["n_train"] == 1500 and summary["seconds"] == 7.0
    assert read_summary(tmp_path / "finetune-augment")["evaluation"]["balanced_accuracy"] == 0.25
