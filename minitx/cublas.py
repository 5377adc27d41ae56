"""Matrix products on the GPU through cuBLAS directly (ctypes), capturable in CUDA graphs.

CuPy refuses to call cuBLAS while a stream is being captured into a CUDA graph,
though cuBLAS itself supports it; every matmul of a training step would then be
impossible to capture.  This module calls ``cublasGemmStridedBatchedEx`` on
CuPy's own cuBLAS handle, on the current stream, with the compute type chosen
by :func:`minitx.backend.set_matmul_precision`; ``backend.matmul`` uses it for
every GPU matmul, eager or captured, so the two run the same code.

Layouts: cuBLAS is column-major, so a row-major C = A @ B is computed as
C^T = B^T @ A^T.  An operand whose last two axes are row-major (unit stride
along columns) or column-major (a transposed view, unit stride along rows)
is passed as it is, with the matching transpose flag and leading dimension;
batch axes must reduce to one stride (or 0 when broadcast).  Anything else is
copied to a contiguous array first.
"""
import ctypes

import numpy as np

from . import backend
from .errors import DeviceError, ShapeError

_OP_N, _OP_T = 0, 1
_R_32F, _R_64F = 0, 1
_COMPUTE_32F = {"highest": 68, "tf32": 77, "bf16": 75}   # CUBLAS_COMPUTE_32F, _FAST_TF32, _FAST_16BF
_COMPUTE_64F = 70
_GEMM_DEFAULT = -1

_lib = None


def _library():
    """libcublas as CuPy loaded it (found in this process's memory map)."""
    global _lib
    if _lib is not None:
        return _lib
    cp = backend.array_module("gpu")
    cp.cuda.device.get_cublas_handle()                   # makes CuPy load cuBLAS
    path = None
    with open("/proc/self/maps") as maps:
        for line in maps:
            name = line.rsplit(" ", 1)[-1].strip()
            if "/libcublas.so" in name:
                path = name
                break
    if path is None:
        raise DeviceError("cannot find the cuBLAS library CuPy loaded (no libcublas.so in "
                          "/proc/self/maps); minitx's GPU matmuls need it")
    try:
        lib = ctypes.CDLL(path)
        gemm = lib.cublasGemmStridedBatchedEx
    except (OSError, AttributeError) as e:
        raise DeviceError(f"cannot load cuBLAS from {path} ({e})") from e
    gemm.restype = ctypes.c_int
    gemm.argtypes = ([ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                      ctypes.c_void_p]
                     + [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_longlong] * 2
                     + [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_longlong,
                        ctypes.c_int, ctypes.c_int, ctypes.c_int])
    lib.cublasSetStream_v2.restype = ctypes.c_int
    lib.cublasSetStream_v2.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.cublasGetStream_v2.restype = ctypes.c_int
    lib.cublasGetStream_v2.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
    _lib = lib
    return lib


def _layout(a):
    """(op, ld) describing the last two axes of ``a`` (R rows, C cols) to column-major cuBLAS, or None.

    Row-major storage is the column-major matrix a^T (C x R) with ld = row stride:
    op N on it gives a^T.  Column-major storage is a itself (R x C): op T gives a^T.
    """
    item = a.itemsize
    R, C = a.shape[-2:]
    if R == 1 and C == 1:
        return _OP_N, 1                                       # one element: any layout will do
    sr, sc = a.strides[-2:]
    if (sc == item or C == 1) and sr % item == 0 and sr >= max(C, 1) * item:
        return _OP_N, sr // item
    if (sr == item or R == 1) and sc % item == 0 and sc >= max(R, 1) * item:
        return _OP_T, sc // item
    return None


def _batch_stride(a, batch):
    """One element stride stepping through ``a``'s batch axes (shape ``batch``), or None."""
    if len(batch) == 0 or int(np.prod(batch)) <= 1:
        return 0
    strides = a.strides[:-2]
    if all(s == 0 for s in strides):
        return 0                                              # broadcast: every batch reads the same matrix
    step = None
    expect = None
    for n, s in zip(reversed(batch), reversed(strides)):      # innermost batch axis first
        if n == 1:
            continue
        if step is None:
            step = expect = s
        if s != expect or s % a.itemsize:
            return None
        expect = s * n
    return (step or 0) // a.itemsize


def matmul(a, b):
    """``a @ b`` for float32/float64 CuPy arrays (NumPy's matmul rules, 1-D operands included)."""
    cp = backend.get_array_module(a)
    if a.dtype != b.dtype or a.dtype.char not in "fd":
        return a @ b                                          # other dtypes: CuPy's own (not capturable)
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul needs arrays with at least one dimension, got {a.shape} and {b.shape}")
    vec_a, vec_b = a.ndim == 1, b.ndim == 1
    a = a[None, :] if vec_a else a                            # (k,) -> (1, k)
    b = b[:, None] if vec_b else b                            # (k,) -> (k, 1)
    M, K = a.shape[-2:]
    K2, N = b.shape[-2:]
    if K != K2:
        raise ShapeError(f"matmul: shapes {a.shape} and {b.shape} do not align ({K} != {K2})")
    batch = ()
    if a.ndim > 2 or b.ndim > 2:                              # batched: broadcast the batch axes
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        a = cp.broadcast_to(a, batch + (M, K))
        b = cp.broadcast_to(b, batch + (K, N))
    out = cp.empty(batch + (M, N), dtype=a.dtype)             # (..., M, N), C-contiguous
    if out.size and K == 0:
        out.fill(0)
    elif out.size:
        _gemm(a, b, out, batch, cp)
    if vec_a:
        out = out[..., 0, :]
    if vec_b:
        out = out[..., 0]
    return out


def gemm_plan(a, b, batch, xp):
    """The arguments of one strided-batched column-major GEMM computing a @ b.

    a (..., M, K) and b (..., K, N) broadcast to batch shape ``batch``.
    Returns ``(op_b, op_a, m, n, k, b, ld_b, stride_b, a, ld_a, stride_a, count)``
    for out^T (N x M) = op_b(b) @ op_a(a); operands that no single layout
    describes come back as contiguous copies (made with ``xp``).
    """
    M, K = a.shape[-2:]
    N = b.shape[-1]
    operands = []
    for x in (a, b):
        lay, stride = _layout(x), _batch_stride(x, batch)
        if lay is None or stride is None:
            x = xp.ascontiguousarray(x)                       # a copy kernel: still capturable
            lay, stride = _layout(x), _batch_stride(x, batch)
        operands.append((x, lay[0], lay[1], stride))
    (a, op_a, ld_a, st_a), (b, op_b, ld_b, st_b) = operands
    count = int(np.prod(batch)) if batch else 1
    return op_b, op_a, N, M, K, b, ld_b, st_b, a, ld_a, st_a, count


def _gemm(a, b, out, batch, cp):
    """out (..., M, N) = a (..., M, K) @ b (..., K, N) with one strided-batched cuBLAS call."""
    op_b, op_a, m, n, k, b, ld_b, st_b, a, ld_a, st_a, count = gemm_plan(a, b, batch, cp)
    lib = _library()
    if a.dtype.char == "d":
        dtype, compute, scalar = _R_64F, _COMPUTE_64F, ctypes.c_double
    else:
        dtype, compute, scalar = _R_32F, _COMPUTE_32F[backend.get_matmul_precision()], ctypes.c_float
    alpha, beta = scalar(1.0), scalar(0.0)
    handle = cp.cuda.device.get_cublas_handle()
    _use_stream(lib, handle, cp.cuda.get_current_stream().ptr)
    status = lib.cublasGemmStridedBatchedEx(             # out (C-contiguous) is out^T with ld N
        handle, op_b, op_a, m, n, k, ctypes.byref(alpha),
        b.data.ptr, dtype, ld_b, st_b,
        a.data.ptr, dtype, ld_a, st_a,
        ctypes.byref(beta), out.data.ptr, dtype, m, m * n,
        count, compute, _GEMM_DEFAULT)
    _check(status, "cublasGemmStridedBatchedEx")


def _use_stream(lib, handle, stream):
    """Point the handle at ``stream`` (CuPy's current one) unless it already is: setting
    a stream also resets cuBLAS's workspace, so it is not done on every call."""
    current = ctypes.c_void_p()
    _check(lib.cublasGetStream_v2(handle, ctypes.byref(current)), "cublasGetStream")
    if (current.value or 0) != stream:
        _check(lib.cublasSetStream_v2(handle, stream), "cublasSetStream")


def _check(status, what):
    if status != 0:
        raise DeviceError(f"{what} failed with cuBLAS status {status}")
