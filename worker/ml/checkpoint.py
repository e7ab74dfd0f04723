"""Per-epoch checkpoints: what a job needs to resume where a dead worker stopped.

A `Checkpoint` is a stage name, the epochs done in it, a JSON-able state (histories,
early stopping, summaries of finished stages) and named arrays (model and optimizer
variables, RNG seed states, best weights). It travels as the bytes of an uncompressed
.npz: one uint8 entry holds the JSON, the others the arrays. Those bytes come back from a
database, so reading them never unpickles and checks every size before allocating.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

FORMAT = 1
STATE_KEY = "__state__"
MAX_ENTRIES = 100_000  # a stacked pretrain with Adam has a few hundred


class CheckpointError(ValueError):
    """Bytes that are not a checkpoint this code wrote, or one that does not fit the model."""


@dataclass
class Checkpoint:
    """Where a job stands at the end of an epoch (or tuning trial)."""

    stage: str
    epoch: int  # epochs (trials, for tune) completed in that stage
    state: dict = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """An uncompressed .npz: arrays by name, the JSON header as uint8."""
        header = {"format": FORMAT, "stage": self.stage, "epoch": self.epoch, "state": self.state}
        if STATE_KEY in self.arrays:
            raise CheckpointError(f"{STATE_KEY!r} is reserved for the state")
        buffer = io.BytesIO()
        text = json.dumps(header, separators=(",", ":")).encode()
        arrays = {STATE_KEY: np.frombuffer(text, np.uint8), **self.arrays}
        np.savez(buffer, allow_pickle=False, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Checkpoint:
        """Read bytes written by to_bytes; anything else raises CheckpointError."""
        try:
            arrays = _read_npz(data)
            header = json.loads(arrays.pop(STATE_KEY).tobytes())
            if header["format"] != FORMAT or not isinstance(header["state"], dict):
                raise CheckpointError(f"unknown format {header['format']!r}")
            return cls(str(header["stage"]), int(header["epoch"]), header["state"], arrays)
        except (KeyError, TypeError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise CheckpointError(f"not a checkpoint: {err}") from err


def _read_npz(data: bytes) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
        if len(infos) > MAX_ENTRIES:
            raise CheckpointError(f"{len(infos)} entries, more than {MAX_ENTRIES}")
        arrays: dict[str, np.ndarray] = {}
        for info in infos:
            name = info.filename.removesuffix(".npy")
            if name in arrays or info.compress_type != zipfile.ZIP_STORED:
                raise CheckpointError(f"entry {info.filename!r}: duplicate or compressed")
            if info.file_size > len(data):
                raise CheckpointError(f"entry {info.filename!r} claims more bytes than there are")
            with archive.open(info) as fh:
                arrays[name] = _read_array(fh, info.file_size)
        return arrays


def _read_array(fh, size: int) -> np.ndarray:  # fh: a ZipExtFile (it has readinto)
    """One .npy member, its declared shape checked against its real size first."""
    readers = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }
    version = np.lib.format.read_magic(fh)
    if version not in readers:
        raise CheckpointError(f".npy format {version} is not one np.savez writes here")
    shape, fortran, dtype = readers[version](fh)
    if dtype.hasobject:
        raise CheckpointError("object arrays are refused (they would need pickle)")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes != size - fh.tell():
        raise CheckpointError(f"array of {shape} {dtype} does not match its {size} bytes")
    buffer = bytearray(nbytes)
    if fh.readinto(buffer) != nbytes:
        raise CheckpointError("array data cut short")
    return np.frombuffer(buffer, dtype).reshape(shape, order="F" if fortran else "C")


def run_key(config: Any, dataset: Any) -> dict:
    """What a checkpoint shares with the run that may resume it: parameters and data."""
    return {"config": config.model_dump(mode="json"), "dataset": dataset.fingerprint()}


def check_resume(
    resume: Checkpoint | None, *, stages: Sequence[str], key: dict, config_type: Any = None
) -> None:
    """Refuse a checkpoint of another job kind, other parameters or other data.

    With `config_type`, the checkpoint's parameters are read through today's model first:
    a field added since it was taken gets its default, which keeps the old behaviour, so
    an upgrade does not cost a run its resume."""
    if resume is None:
        return
    if resume.stage not in stages:
        raise CheckpointError(f"cannot resume a {resume.stage!r} checkpoint here")
    stored = resume.state.get("run") or {}
    if config_type is not None and isinstance(stored.get("config"), dict):
        try:
            config = config_type(**stored["config"]).model_dump(mode="json")
            stored = {**stored, "config": config}
        except ValueError:  # pydantic's ValidationError: not these parameters at all
            pass
    if json.loads(json.dumps(key)) != stored:
        raise CheckpointError("the checkpoint was taken with other parameters or data")


def capture(variables: Sequence, prefix: str) -> dict[str, np.ndarray]:
    """Copies of the variables' values as `<prefix>/0000`, `<prefix>/0001`, ..."""
    return {f"{prefix}/{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(variables)}


def restore(variables: Sequence, arrays: dict[str, np.ndarray], prefix: str) -> None:
    """Assign what `capture` took, refusing a checkpoint of another model."""
    values = [arrays.get(f"{prefix}/{i:04d}") for i in range(len(variables))]
    extra = f"{prefix}/{len(variables):04d}" in arrays
    present = [value for value in values if value is not None]
    if extra or len(present) != len(values):
        raise CheckpointError(f"{prefix}: checkpoint holds another number of variables")
    for variable, value in zip(variables, present, strict=True):
        if tuple(variable.shape) != value.shape:
            raise CheckpointError(
                f"{prefix}: {variable.path} is {tuple(variable.shape)}, checkpoint has "
                f"{value.shape}"
            )
    for variable, value in zip(variables, present, strict=True):
        variable.assign(value)


def capture_training(model: keras.Model) -> dict[str, np.ndarray]:
    """Model state (weights, BN statistics, RNG seed states) and the optimizer's variables."""
    arrays = capture(model.variables, "model")
    if model.optimizer is not None and model.optimizer.built:
        arrays |= capture(model.optimizer.variables, "optimizer")
    return arrays


def restore_training(model: keras.Model, arrays: dict[str, np.ndarray]) -> None:
    """Put back what capture_training took, into a compiled model built the same way."""
    restore(model.variables, arrays, "model")
    if any(key.startswith("optimizer/") for key in arrays):
        # Keras builds the optimizer lazily at the first step; its slots must exist to assign.
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        restore(model.optimizer.variables, arrays, "optimizer")


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping whose counters and best weights survive a restart.

    Keras resets them in on_train_begin; after `resume` that reset is skipped once.
    """

    _resumed: dict | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._resumed is None:
            super().on_train_begin(logs)
            return
        state, self._resumed = self._resumed, None
        if state["best_weights"] == "current":  # saved only as the model's own weights
            self.best_weights = self.model.get_weights()

    def snapshot(self, epochs_done: int) -> tuple[dict, dict[str, np.ndarray]]:
        """JSON state and arrays after `epochs_done` epochs (this one's on_epoch_end ran)."""
        kept = self.best_weights
        where = None if kept is None else "stored"
        if kept is not None and self.best_epoch == epochs_done - 1:
            where = "current"  # improved this epoch: identical to the model; save it once
        state = {
            "best": None if self.best is None else float(self.best),
            "best_epoch": int(self.best_epoch),
            "wait": int(self.wait),
            "stopped_epoch": int(self.stopped_epoch),
            "best_weights": where,
        }
        arrays = (
            {} if where != "stored" else {f"early_stopping/{i:04d}": w for i, w in enumerate(kept)}
        )
        return state, arrays

    def resume(self, state: dict, arrays: dict[str, np.ndarray]) -> None:
        """Take the state of `snapshot`; the next on_train_begin keeps it."""
        self.best = state["best"]
        self.best_epoch = state["best_epoch"]
        self.wait = state["wait"]
        self.stopped_epoch = state["stopped_epoch"]
        self.best_weights = None
        if state["best_weights"] == "stored":
            count = sum(key.startswith("early_stopping/") for key in arrays)
            self.best_weights = [arrays[f"early_stopping/{i:04d}"] for i in range(count)]
        self._resumed = state
