"""Saving and loading training state to one ``.npz`` file, safely.

A checkpoint holds the model's parameters, optionally the optimizer's and the
learning-rate schedule's state, the step, the RNG state and any JSON-able
``extra``.  Arrays are stored as plain ``.npz`` members and everything else as
one JSON document, so loading never unpickles code (``allow_pickle=False``).

Writes are atomic: the file is written under a temporary name in the same
folder, flushed to disk (fsync) and renamed over the target, so a crash
mid-save leaves the previous checkpoint intact.  A SHA-256 digest over every
array is stored and checked on load, so a truncated or corrupted file is
reported as such instead of loading garbage.
"""
import hashlib
import json
import os
import tempfile
import zipfile

import numpy as np

from . import backend
from .errors import CheckpointError

FORMAT_VERSION = 1


def _flatten(obj, prefix, arrays):
    """Replace arrays inside nested dicts/lists by {"__array__": key}; collect them in ``arrays``."""
    if hasattr(obj, "shape") and hasattr(obj, "dtype") and not np.isscalar(obj):
        key = prefix
        arrays[key] = backend.to_numpy(obj)
        return {"__array__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[_flatten(k, f"{prefix}.k{i}", arrays), _flatten(v, f"{prefix}.{i}", arrays)]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, f"{prefix}.{i}", arrays) for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _unflatten(obj, arrays):
    if isinstance(obj, dict) and "__array__" in obj:
        return arrays[obj["__array__"]]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {_unflatten(k, arrays): _unflatten(v, arrays) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_unflatten(v, arrays) for v in obj]
    return obj


def _digest(arrays):
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(key.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_checkpoint(path, model, optimizer=None, scheduler=None, step=0, extra=None):
    """Atomically write model (+ optimizer, scheduler, step, CPU RNG state, extra) to ``path``."""
    arrays = {}
    meta = {
        "format": FORMAT_VERSION,
        "step": int(step),
        "model": _flatten(dict(model.state_dict()), "model", arrays),
        "optimizer": None if optimizer is None else _flatten(optimizer.state_dict(), "optim", arrays),
        "scheduler": None if scheduler is None else _flatten(scheduler.state_dict(), "sched", arrays),
        "rng": _flatten(backend.get_rng_state(), "rng", arrays),
        "extra": extra,
    }
    meta["sha256"] = _digest(arrays)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)                      # atomic on POSIX and Windows
        _fsync_dir(folder)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def _fsync_dir(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_checkpoint(path):
    """Read and verify a checkpoint; returns its contents as a dict (arrays as NumPy)."""
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "__meta__" not in z.files:
                raise CheckpointError(f"{path!r} is not a minitx checkpoint (no metadata)")
            meta = json.loads(z["__meta__"].tobytes().decode())
            arrays = {k: z[k] for k in z.files if k != "__meta__"}
    except CheckpointError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, KeyError, EOFError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {path!r} is truncated or corrupted ({type(e).__name__}: {e})") from None
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path!r} has format {meta.get('format')}, expected {FORMAT_VERSION}")
    if _digest(arrays) != meta.get("sha256"):
        raise CheckpointError(f"checkpoint {path!r} is corrupted: its checksum does not match its contents")
    return {k: _unflatten(v, arrays) for k, v in meta.items() if k not in ("format", "sha256")}


def load_checkpoint(path, model, optimizer=None, scheduler=None, restore_rng=True):
    """Load ``path`` into ``model`` (+ optimizer, scheduler, RNG); returns ``{"step", "extra"}``.

    Raises CheckpointError for a missing, truncated or corrupted file, and for
    parameters whose names or shapes do not match the model.
    """
    ckpt = read_checkpoint(path)
    try:
        model.load_state_dict(ckpt["model"])
        if optimizer is not None:
            if ckpt["optimizer"] is None:
                raise CheckpointError(f"checkpoint {path!r} holds no optimizer state")
            optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt["scheduler"] is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
    except (KeyError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"checkpoint {path!r} does not match this model: {e}") from None
    if restore_rng:
        backend.set_rng_state(ckpt["rng"])
    return {"step": ckpt["step"], "extra": ckpt["extra"]}
