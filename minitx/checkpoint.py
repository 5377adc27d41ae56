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

Loading a file from someone else is safe: before any array is read, every
member's ``.npy`` header is checked (plain bool/int/float arrays only, declared
size equal to stored size), the total is capped relative to the model
(:func:`default_max_bytes`), and the parameter names and shapes are compared
with the model's; anything else is a :class:`~minitx.errors.CheckpointError`.
"""
import hashlib
import json
import os
import tempfile
import zipfile
import zlib

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


MAX_META_BYTES = 64 << 20      # the JSON document of a checkpoint is small: refuse a huge one
_CORRUPT = (OSError, ValueError, EOFError, KeyError, TypeError, RecursionError, NotImplementedError,
            zipfile.BadZipFile, zlib.error)


def _array_headers(zf, path, max_bytes):
    """{member name: (shape, dtype)} of every ``.npy`` member, from its header only (no data read).

    Refuses a member that is not a ``.npy`` file, holds anything but a plain
    bool/int/uint/float array (object arrays are pickles), declares more bytes
    than it stores (truncated or forged), or makes the total exceed ``max_bytes``.
    """
    headers, total = {}, 0
    for info in zf.infolist():
        name = info.filename
        if not name.endswith(".npy"):
            raise CheckpointError(f"checkpoint {path!r} holds member {name!r}, which is not a .npy array: "
                                  "refused (a checkpoint holds only plain numeric arrays)")
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise CheckpointError(f"checkpoint {path!r}: member {name!r} has .npy format {version}: refused")
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(f)
            header_len = f.tell()
        if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in "biuf":
            raise CheckpointError(f"checkpoint {path!r}: member {name!r} has dtype {dtype}, not a plain "
                                  "numeric array (object arrays would need unpickling): refused")
        nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if info.file_size - header_len != nbytes:
            raise CheckpointError(f"checkpoint {path!r} is truncated or corrupted: member {name!r} declares "
                                  f"shape {shape} ({nbytes} bytes) but stores {info.file_size - header_len}")
        total += nbytes
        if max_bytes is not None and total > max_bytes:
            raise CheckpointError(f"checkpoint {path!r} holds more than {max_bytes} bytes of arrays, more than "
                                  "a checkpoint of this model can: refused (pass max_bytes= to allow it)")
        headers[name[:-4]] = (tuple(shape), dtype)
    return headers


def _check_model_shapes(path, model_meta, headers, expected):
    """Compare the parameter names and shapes the file declares with ``expected`` before reading data."""
    try:
        declared = {k: headers[v["__array__"]][0] for k, v in model_meta["__dict__"]}
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"checkpoint {path!r} is corrupted: malformed model entry in its metadata") from None
    missing = [k for k in expected if k not in declared]
    unexpected = [k for k in declared if k not in expected]
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {path!r} does not match this model: missing parameters {missing}, "
                              f"unexpected parameters {unexpected}")
    for k, shape in expected.items():
        if declared[k] != tuple(shape):
            raise CheckpointError(f"checkpoint {path!r} does not match this model: parameter {k!r} has shape "
                                  f"{declared[k]} in the file but {tuple(shape)} in the model")


def read_checkpoint(path, expected_shapes=None, max_bytes=None):
    """Read and verify a checkpoint; returns its contents as a dict (arrays as NumPy).

    Nothing is unpickled and nothing large is allocated before it is checked:
    the file size and every array's declared shape and dtype are read first and
    refused (CheckpointError) when the file is over ``max_bytes``, an array is
    not plain numeric, or (with ``expected_shapes``, {parameter name: shape})
    the parameters do not match.  Then the arrays are read and their SHA-256
    compared with the stored one.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    size = os.path.getsize(path)
    if max_bytes is not None and size > max_bytes + MAX_META_BYTES:
        raise CheckpointError(f"checkpoint {path!r} is {size} bytes, more than a checkpoint of this model can "
                              f"be ({max_bytes} bytes of arrays): refused (pass max_bytes= to allow it)")
    try:
        with zipfile.ZipFile(path) as zf:
            headers = _array_headers(zf, path, max_bytes)
            if headers.get("__meta__", ((), None))[1] != np.uint8 or len(headers["__meta__"][0]) != 1 \
                    or headers["__meta__"][0][0] > MAX_META_BYTES:
                raise CheckpointError(f"{path!r} is not a minitx checkpoint (no valid metadata)")
            meta = json.loads(_read_array(zf, "__meta__").tobytes().decode())
            if not isinstance(meta, dict):
                raise CheckpointError(f"{path!r} is not a minitx checkpoint (metadata is not a JSON object)")
            if meta.get("format") != FORMAT_VERSION:
                raise CheckpointError(f"checkpoint {path!r} has format {meta.get('format')}, expected {FORMAT_VERSION}")
            if expected_shapes is not None:
                _check_model_shapes(path, meta.get("model"), headers, expected_shapes)
            arrays = {k: _read_array(zf, k) for k in headers if k != "__meta__"}
    except CheckpointError:
        raise
    except _CORRUPT as e:
        raise CheckpointError(f"checkpoint {path!r} is truncated or corrupted ({type(e).__name__}: {e})") from None
    if _digest(arrays) != meta.get("sha256"):
        raise CheckpointError(f"checkpoint {path!r} is corrupted: its checksum does not match its contents")
    try:
        return {k: _unflatten(v, arrays) for k, v in meta.items() if k not in ("format", "sha256")}
    except _CORRUPT:
        raise CheckpointError(f"checkpoint {path!r} is corrupted: malformed metadata") from None


def _read_array(zf, name):
    with zf.open(name + ".npy") as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def default_max_bytes(model):
    """The most array bytes a checkpoint of ``model`` may hold: model + optimizer state
    (up to 3 copies, as Adam's moments) in float64, plus 16 MiB for the rest."""
    return 4 * 8 * model.num_params + (16 << 20)


def load_checkpoint(path, model, optimizer=None, scheduler=None, restore_rng=True, max_bytes=None):
    """Load ``path`` into ``model`` (+ optimizer, scheduler, RNG); returns ``{"step", "extra"}``.

    Raises CheckpointError for a missing, truncated or corrupted file, one larger
    than ``max_bytes`` of arrays (default: :func:`default_max_bytes` of the
    model), one holding anything but plain numeric arrays, and for parameters
    whose names or shapes do not match the model -- all checked before any
    array is read or anything is changed.
    """
    expected = {n: p.shape for n, p in model.named_parameters()}
    ckpt = read_checkpoint(path, expected, default_max_bytes(model) if max_bytes is None else max_bytes)
    try:
        if restore_rng:                     # validate the RNG state before changing anything
            np.random.default_rng().bit_generator.state = ckpt["rng"]
        if optimizer is not None:
            if ckpt["optimizer"] is None:
                raise CheckpointError(f"checkpoint {path!r} holds no optimizer state")
            optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt["scheduler"] is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        model.load_state_dict(ckpt["model"])
    except (KeyError, ValueError, TypeError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"checkpoint {path!r} does not match this model: {e}") from None
    if restore_rng:
        backend.set_rng_state(ckpt["rng"])
    return {"step": ckpt["step"], "extra": ckpt["extra"]}
