"""Devices and array modules: the only file in minitx that imports CuPy.

A device is named ``"cpu"`` (NumPy) or ``"gpu"`` / ``"cuda"`` (CuPy).  Op code never
asks which device it is on: it calls :func:`get_array_module` on its input arrays
and uses the module it gets back (``xp.exp``, ``xp.matmul`` ...), so one code path
serves both devices.  Moving data between devices happens only in :func:`to_device`
and :func:`to_numpy`, which a user calls explicitly.

Random numbers: :func:`manual_seed` seeds one generator per device; every random
draw minitx makes (weight init, dropout) goes through :func:`rng`.
"""
import numpy as np

from .errors import DeviceError, InputError

_DEVICE_ALIASES = {"cpu": "cpu", "gpu": "gpu", "cuda": "gpu"}


def _keep_freed_memory_for_reuse():
    """Ask glibc's malloc to reuse freed large blocks instead of returning them to the OS.

    A training step allocates and frees the same large temporaries every step.
    By default glibc serves each block over ~128 KB-32 MB with a fresh mmap and
    unmaps it on free, so every step pays a page fault per 4 KB page touched
    (the step's elementwise ops ran ~2x slower).  Raising the mmap and trim
    thresholds lets the heap keep those pages.  Linux/glibc only; a no-op
    elsewhere; set MINITX_MALLOC_TUNING=0 to skip it.
    """
    import os
    import sys
    if not sys.platform.startswith("linux") or os.environ.get("MINITX_MALLOC_TUNING", "1") == "0":
        return
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)      # serve blocks up to 1 GiB from the heap
        libc.mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1)  # keep up to 2 GiB of freed heap (a C int)
    except (OSError, AttributeError):
        pass


_keep_freed_memory_for_reuse()

_cupy = None          # the cupy module once loaded
_cupy_problem = None  # why CuPy cannot be used, once we know


def _load_cupy():
    """Import CuPy and check that a CUDA device exists; remember the outcome."""
    global _cupy, _cupy_problem
    if _cupy is not None or _cupy_problem is not None:
        return _cupy
    try:
        import cupy
    except ImportError as e:
        _cupy_problem = (
            f"CuPy is not installed ({e}). Install the wheel matching your CUDA "
            "version, e.g. `pip install cupy-cuda12x` (CUDA 12) or `pip install "
            "cupy-cuda13x` (CUDA 13), or `pip install minitx[gpu]`."
        )
        return None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDA driver missing or broken
        count, detail = 0, f" ({e})"
    else:
        detail = ""
    if count < 1:
        _cupy_problem = (
            f"CuPy is installed but no CUDA device was found{detail}. Check the "
            "NVIDIA driver (`nvidia-smi`) or use device='cpu'."
        )
        return None
    _cupy = cupy
    return cupy


def gpu_available():
    """True when CuPy imports and at least one CUDA device is visible."""
    return _load_cupy() is not None


def normalize_device(device):
    """Map a device name (``"cpu"``, ``"gpu"``, ``"cuda"``) to ``"cpu"`` or ``"gpu"``."""
    if device is None:
        return "cpu"
    name = str(device).lower()
    if name.startswith("cuda:") or name.startswith("gpu:"):
        name = name.split(":")[0]
    if name not in _DEVICE_ALIASES:
        raise DeviceError(
            f"unknown device {device!r}: expected 'cpu', 'gpu' or 'cuda'"
        )
    return _DEVICE_ALIASES[name]


def array_module(device):
    """Return the array module (numpy or cupy) for a device name.

    Raises DeviceError saying what to install when the GPU is asked for but
    CuPy or a CUDA device is missing.
    """
    if normalize_device(device) == "cpu":
        return np
    cp = _load_cupy()
    if cp is None:
        raise DeviceError(f"device {device!r} is not available: {_cupy_problem}")
    return cp


def is_gpu_array(array):
    """True when ``array`` is a CuPy array (without importing CuPy)."""
    return _cupy is not None and isinstance(array, _cupy.ndarray)


def device_of(array):
    """``"gpu"`` for a CuPy array, ``"cpu"`` for anything else."""
    return "gpu" if is_gpu_array(array) else "cpu"


def get_array_module(*arrays):
    """The array module of the given arrays (numpy or cupy).

    Raises DeviceError when CPU and GPU arrays are mixed: minitx never copies
    between devices behind the user's back.
    """
    if _cupy is None:  # CuPy never loaded: every array is a NumPy array
        return np
    on_gpu = [isinstance(a, _cupy.ndarray) for a in arrays]
    if all(on_gpu):
        return _cupy
    if any(on_gpu):
        devs = ", ".join("gpu" if g else "cpu" for g in on_gpu)
        raise DeviceError(
            f"operands are on different devices ({devs}); move them to one "
            "device first with tensor.to('cpu') or tensor.to('gpu')"
        )
    return np


def to_device(array, device):
    """Copy ``array`` to ``device`` (no copy when it is already there)."""
    device = normalize_device(device)
    if device == "cpu":
        return to_numpy(array)
    cp = array_module(device)
    return cp.asarray(array)


def to_numpy(array):
    """A NumPy copy of ``array`` (an explicit device-to-host transfer for GPU arrays)."""
    if is_gpu_array(array):
        return _cupy.asnumpy(array)
    return np.asarray(array)


def scatter_add(target, indices, values):
    """``target[indices] += values`` with repeated indices summed (in place)."""
    if is_gpu_array(target):
        _cupy.add.at(target, indices, values)        # atomic adds on the device
    else:
        np.add.at(target, indices, values)


# add_rows: up to this many distinct rows one one-hot matmul sums them (measured: at 256-300
# distinct rows of (N, D) = (1600, 512) it still took half reduceat's time; at 1000+, longer)
ONE_HOT_MAX_ROWS = 256


def add_rows(target, rows, values):
    """``target[rows[i]] += values[i]`` for every i, repeated rows summed (in place).

    target (V, D), rows (N,) ints in [0, V), values (N, D).  On the CPU this sorts the rows
    into runs of equal rows.  With at most ``ONE_HOT_MAX_ROWS`` runs (small
    vocabularies, positions) of float32/float64 values one matmul sums them, (U, N)
    one-hot @ (N, D); otherwise ``add.reduceat`` sums each run (it walks the strided axis, so it is
    several times slower).  Both are many times faster than ``np.add.at``.  On
    the GPU it is CuPy's scatter-add.
    """
    if is_gpu_array(target):
        return scatter_add(target, rows, values)
    if rows.size == 0:
        return target
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    first = np.r_[True, sorted_rows[1:] != sorted_rows[:-1]]        # (N,) True where a run starts
    starts = np.flatnonzero(first)                                  # (U,)
    sums = None
    if starts.size <= ONE_HOT_MAX_ROWS and values.dtype in (np.float32, np.float64):   # BLAS dtypes
        onehot = np.zeros((starts.size, rows.size), dtype=values.dtype)   # (U, N)
        onehot[np.cumsum(first) - 1, order] = 1       # onehot[u, i] = 1 where rows[i] is the u-th distinct row
        with np.errstate(invalid="ignore", over="ignore"):        # non-finite: redone below
            sums = onehot @ values                                  # (U, N) @ (N, D) -> (U, D)
        if not np.isfinite(sums).all():   # 0 * inf = nan would leak into other rows' sums
            sums = None
    if sums is None:
        sums = np.add.reduceat(values[order], starts, axis=0)       # (U, D)
    target[sorted_rows[starts]] += sums
    return target


def matmul(a, b, out=None):
    """``a @ b`` (NumPy rules); on the GPU through :mod:`minitx.cublas`, which CUDA graphs can capture.

    ``out``: an array (or strided view) to write the product into; NumPy writes
    it directly, on the GPU it costs one copy.
    """
    if is_gpu_array(a):
        from . import cublas
        if out is None:
            return cublas.matmul(a, b)
        out[...] = cublas.matmul(a, b)
        return out
    return np.matmul(a, b, out=out)


CACHE_BLOCK = 1 << 16   # elements: a few arrays of this many float32 fit a core's L2 cache


def cache_blocks(size, xp, width=1):
    """Slices cutting ``size`` rows of ``width`` elements into blocks whose working set fits the CPU cache.

    A chain of N NumPy passes over a large array streams it through main
    memory N times; run block by block, the data stays in cache (GELU,
    LayerNorm and the Adam update ran ~2x faster).  On the GPU: one block.
    """
    step = max(size, 1) if xp is not np else max(1, CACHE_BLOCK // max(width, 1))
    return [slice(i, i + step) for i in range(0, max(size, 1), step)]


# ---------------------------------------------------------------- randomness
_seed = None
_generators = {}


def manual_seed(seed):
    """Seed every random draw minitx makes (init, dropout) on every device."""
    global _seed
    _seed = int(seed)
    _generators.clear()


def rng(device="cpu"):
    """The random generator of a device (``numpy.random.Generator`` or CuPy's)."""
    device = normalize_device(device)
    gen = _generators.get(device)
    if gen is None:
        seed = _seed if _seed is not None else np.random.SeedSequence().entropy % (2**63)
        if device == "cpu":
            gen = np.random.default_rng(seed)
        else:
            gen = array_module("gpu").random.default_rng(seed)
        _generators[device] = gen
    return gen


def get_rng_state():
    """The CPU generator's state as a JSON-serialisable dict (for checkpoints)."""
    return rng("cpu").bit_generator.state


def set_rng_state(state):
    """Restore a state returned by :func:`get_rng_state`."""
    rng("cpu").bit_generator.state = state


_MATMUL_PRECISIONS = ("highest", "tf32", "bf16")


def set_matmul_precision(precision):
    """Choose how float32 matrix products run on the GPU: ``"highest"``, ``"tf32"`` or ``"bf16"``.

    ``"highest"`` (the default) computes in full float32.  ``"tf32"`` lets
    cuBLAS round the inputs of float32 matmuls to TF32 (10-bit mantissa) and
    ``"bf16"`` to bfloat16 (7-bit mantissa) for the tensor cores, accumulating
    in float32: several times faster on large products, with relative errors
    near 1e-3 (tf32) and 1e-2 (bf16).  Parameters, gradients, activations and
    optimizer state stay float32 either way (float32 master weights).
    Float64 is never affected, and on the CPU the setting changes nothing.
    """
    if precision not in _MATMUL_PRECISIONS:
        raise InputError(f"set_matmul_precision: precision must be one of {_MATMUL_PRECISIONS}, "
                         f"got {precision!r}")
    global _matmul_precision
    _matmul_precision = precision        # read by minitx.cublas at every float32 product


def get_matmul_precision():
    """The precision chosen by :func:`set_matmul_precision` (``"highest"`` unless changed)."""
    return _matmul_precision


_matmul_precision = "highest"


def stream_is_capturing():
    """True while CuPy's current stream is being recorded into a CUDA graph (False without CuPy)."""
    return _cupy is not None and _cupy.cuda.get_current_stream().is_capturing()


def synchronize(device):
    """Wait until queued GPU work is done (no-op on the CPU); for timing only."""
    if normalize_device(device) == "gpu":
        array_module("gpu").cuda.Device().synchronize()
