"""One worker per GPU: which processes `serve --gpus` / `worker --gpus` start, each pinned
to its device and named after it; a machine without GPUs gets one CPU worker (no GPU needed)."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from cli import serve as serve_module
from cli.main import app
from cli.processes import worker_command
from tests.stack import scaled
from worker import device

TWO_GPUS = ["0", "1"]


def test_gpus_list_starts_one_pinned_named_worker_per_gpu():
    layout, said = serve_module.worker_layout("0,1", 1, detect=lambda: TWO_GPUS)
    assert layout == [
        ("gpu0", {"CUDA_VISIBLE_DEVICES": "0", device.NAME_VARIABLE: "gpu0"}),
        ("gpu1", {"CUDA_VISIBLE_DEVICES": "1", device.NAME_VARIABLE: "gpu1"}),
    ]
    assert said == "workers: gpu0, gpu1"
    command = worker_command("gpu", "gpu1")
    assert command[command.index("-n") + 1] == "gpu1@%h"


def test_gpus_all_takes_every_detected_gpu_and_a_list_only_those_there():
    three = lambda: ["0", "1", "2"]  # noqa: E731
    assert [n for n, _ in serve_module.worker_layout("all", 1, detect=three)[0]] == [
        "gpu0",
        "gpu1",
        "gpu2",
    ]
    with pytest.raises(device.GpuSpecError, match="no GPU 3"):
        serve_module.worker_layout("0,3", 1, detect=three)
    with pytest.raises(device.GpuSpecError, match="expected all, none"):
        serve_module.worker_layout("first", 1, detect=three)


def test_without_gpus_all_falls_back_to_one_cpu_worker_and_says_so():
    assert device.detect_gpus() == []  # this machine: no nvidia-smi (or it lists none)
    layout, said = serve_module.worker_layout("all", 1)
    assert [name for name, _ in layout] == ["cpu"]
    assert said == "no GPU found (nvidia-smi -L lists none): starting one CPU worker"
    # Without --gpus, serve keeps its numbered, unpinned workers.
    assert serve_module.worker_layout(None, 2) == ([("worker1", {}), ("worker2", {})], None)


def test_nvidia_smi_listing_is_parsed_into_indices(monkeypatch, tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        "#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-aa)'\necho 'GPU 1: NVIDIA H200 (UUID: b)'\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert device.detect_gpus() == TWO_GPUS


def test_each_supervised_worker_gets_its_own_device_and_name(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # the parent's is not what they get
    layout, _ = serve_module.worker_layout("0,1", 1, detect=lambda: TWO_GPUS)
    seen = []
    for name, env in layout:
        out = tmp_path / name
        show = (
            "import os, sys; open(sys.argv[1], 'w').write("
            "os.environ['CUDA_VISIBLE_DEVICES'] + ' ' + os.environ['STACKLAB_WORKER_NAME'])"
        )
        service = serve_module.Supervised(name, [sys.executable, "-c", show, str(out)], env=env)
        service.start()
        assert service.proc.wait(timeout=scaled(120)) == 0
        seen.append(out.read_text())
    assert seen == ["0 gpu0", "1 gpu1"]


def test_worker_name_carries_the_gpu_label_and_keeps_the_pid_last(monkeypatch):
    monkeypatch.setenv(device.NAME_VARIABLE, "gpu1")
    name = device.worker_name()
    assert name.startswith("gpu1@") and name.rsplit(":", 1)[1].isdigit()
    monkeypatch.delenv(device.NAME_VARIABLE)
    assert "@" not in device.worker_name()


def test_worker_command_with_gpus_all_here_says_so_and_supervises_one_cpu_worker(monkeypatch):
    started = []
    monkeypatch.setattr("store.queue.declare", lambda: None)
    monkeypatch.setattr(serve_module, "supervise", lambda services, up: started.extend(services))
    result = CliRunner().invoke(app, ["worker", "--gpus", "all"])
    assert result.exit_code == 0, result.output
    assert "no GPU found" in result.output and "one CPU worker" in result.output
    [only] = started
    assert only.name == "cpu" and only.command[only.command.index("-n") + 1] == "cpu@%h"


def test_unknown_gpu_is_a_plain_error():
    result = CliRunner().invoke(app, ["worker", "--gpus", "7"])
    assert result.exit_code != 0
    assert "no GPU 7 here" in result.output
