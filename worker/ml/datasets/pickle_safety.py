"""Unpickling uploaded CIFAR batches: whitelisted globals, and size, opcode and depth budgets."""

from __future__ import annotations

import io
import pickle
import pickletools
from typing import Any

import numpy as np

from worker.ml.datasets.dataset import DataError, reason
from worker.ml.datasets.limits import DEFAULT_LIMITS, ImportLimits

# Opcodes that build a new container from what they pop; its depth is one more than theirs.
_BUILDERS = {
    "LIST", "TUPLE", "DICT", "FROZENSET", "TUPLE1", "TUPLE2", "TUPLE3",
    "EMPTY_LIST", "EMPTY_DICT", "EMPTY_TUPLE", "EMPTY_SET",
}  # fmt: skip
# Opcodes that add what they pop to the container below it, which stays on the stack.
_FILLERS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}
_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
_GETS = {"GET", "BINGET", "LONG_BINGET"}


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """How Python 3 pickles bytes at protocols < 3; other codecs (zlib, ...) are refused."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refused codec {encoding!r} in _codecs.encode")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """Globals a CIFAR batch pickle may name: numpy array and dtype reconstruction only."""
    reconstruct = np.ndarray((0,), np.uint8).__reduce__()[0]
    frombuffer = np.arange(2).__reduce_ex__(5)[0]
    scalar = np.uint8(0).__reduce__()[0]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    # Python 2 era pickles say numpy.core, NumPy 2 says numpy._core; accept both spellings.
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only whitelisted numpy globals: uploads are untrusted."""

    allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        """Resolve a whitelisted global or refuse."""
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name} (only numpy arrays and plain data are allowed)"
            ) from None


def _pop(stack: list[list[int]], marks: list[int], op: pickletools.OpcodeInfo) -> list[list[int]]:
    """Pop what op consumes: everything above the last mark, then its fixed arguments."""
    before = op.stack_before
    if pickletools.markobject in before:
        start = marks.pop()  # IndexError on a pickle without the mark: reported as invalid
        popped = stack[start:]
        del stack[start:]
        fixed = before.index(pickletools.markobject)
    else:
        popped, fixed = [], len(before)
    if fixed > len(stack):
        raise ValueError(f"{op.name} on a stack of {len(stack)}")
    if fixed:
        popped = stack[-fixed:] + popped
        del stack[-fixed:]
    return popped


def scan_pickle(data: bytes, label: str, limits: ImportLimits) -> None:
    """Walk the opcodes without building objects: refuse big, long, deep or lying pickles."""
    if len(data) > limits.max_pickle_bytes:
        raise DataError(
            f"{label}: pickle is {len(data):,} bytes, more than {limits.max_pickle_bytes:,}"
        )
    # Each stack entry is a one-item list holding the nesting depth of the object it stands
    # for; the memo hands out the same list, so filling a shared container deepens all uses.
    stack: list[list[int]] = []
    marks: list[int] = []
    memo: dict[Any, list[int]] = {}
    try:
        for count, (op, arg, _) in enumerate(pickletools.genops(data), 1):
            if count > limits.max_pickle_ops:
                raise DataError(f"{label}: pickle has more than {limits.max_pickle_ops:,} opcodes")
            if op.name == "MARK":
                marks.append(len(stack))
                continue
            if op.name in _GETS:
                stack.append(memo[arg])
                continue
            if op.name in _PUTS or op.name == "MEMOIZE":
                memo[arg if op.name in _PUTS else len(memo)] = stack[-1]
                continue
            popped = _pop(stack, marks, op)
            inner = max((d[0] for d in popped), default=0)
            if op.name in _FILLERS:
                popped[0][0] = max(popped[0][0], 1 + max((d[0] for d in popped[1:]), default=0))
                out = [popped[0]]
            else:
                depth = inner + 1 if op.name in _BUILDERS else inner
                out = [popped[0]] * 2 if op.name == "DUP" else [[depth] for _ in op.stack_after]
            if out and out[0][0] > limits.max_pickle_depth:
                raise DataError(f"{label}: pickle nests deeper than {limits.max_pickle_depth}")
            stack.extend(out)
    except (ValueError, IndexError, KeyError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{label}: not a valid pickle ({reason(exc)})") from exc


def safe_unpickle(data: bytes, label: str, limits: ImportLimits = DEFAULT_LIMITS) -> Any:
    """Unpickle with encoding="bytes" (as the official CIFAR batches need), running no code."""
    scan_pickle(data, label, limits)
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise DataError(f"{label}: unsafe or invalid pickle: {reason(exc, typed=False)}") from exc
    except (EOFError, ValueError, TypeError, LookupError, AttributeError, MemoryError) as exc:
        raise DataError(f"{label}: not a valid pickle ({reason(exc)})") from exc
