"""minitx.cublas: the GEMM arguments it derives are right for every layout.

On any machine, a NumPy emulation of cuBLAS's column-major strided-batched
GEMM runs the planned arguments over the operands' raw memory and must give
``a @ b``.  On a GPU, the real call must agree with CuPy's matmul.
"""
import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

import minitx
from minitx import cublas

N_OP, T_OP = 0, 1


def stored(x, op, rows_of_result, k, ld, stride, count):
    """The (count, r, c) column-major matrices cuBLAS would read, after applying op."""
    item = x.itemsize
    shape = (rows_of_result, k) if op == N_OP else (k, rows_of_result)     # as stored, column-major
    mats = as_strided(x, shape=(count,) + shape, strides=(stride * item, item, ld * item))
    return mats if op == N_OP else mats.transpose(0, 2, 1)


def emulate(a, b):
    """a @ b computed only from cublas.gemm_plan's arguments and the operands' memory."""
    M, K = a.shape[-2:]
    N = b.shape[-1]
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = np.broadcast_to(a, batch + (M, K))
    b = np.broadcast_to(b, batch + (K, N))
    op_b, op_a, m, n, k, b2, ld_b, st_b, a2, ld_a, st_a, count = cublas.gemm_plan(a, b, batch, np)
    assert (m, n, k) == (N, M, K)
    assert ld_b >= max(m if op_b == N_OP else k, 1)       # cuBLAS: ld >= rows of the stored matrix
    assert ld_a >= max(k if op_a == N_OP else n, 1)
    B = stored(b2, op_b, m, k, ld_b, st_b, count)          # (count, m, k) = b^T
    if op_a == N_OP:
        A = as_strided(a2, shape=(count, k, n), strides=(st_a * a2.itemsize, a2.itemsize, ld_a * a2.itemsize))
    else:
        A = as_strided(a2, shape=(count, n, k), strides=(st_a * a2.itemsize, a2.itemsize, ld_a * a2.itemsize))
        A = A.transpose(0, 2, 1)
    C = B @ A                                              # (count, m, n) = out^T, column-major
    return C.transpose(0, 2, 1).reshape(batch + (M, N))


def layouts(rng, xp=np, dtype=np.float64):
    """(a, b) pairs covering row-major, transposed views, padded rows, broadcast and strided batches."""
    r = lambda *s: xp.asarray(rng.standard_normal(s).astype(dtype))
    packed = r(2, 5, 3 * 6)                                # (B, T, 3I) with I = 6, 2 heads of 3
    qh = packed[..., :6].reshape(2, 5, 2, 3).transpose(0, 2, 1, 3)        # (B, H, T, E) view
    kh = packed[..., 6:12].reshape(2, 5, 2, 3).transpose(0, 2, 1, 3)
    w = r(4, 3)
    return [
        (r(3, 4), r(4, 5)),
        (r(4, 3).T, r(4, 5)),                              # transposed left
        (r(3, 4), r(5, 4).T),                              # transposed right (x @ W.T)
        (r(4, 3).T, r(5, 4).T),
        (r(6, 8)[:, :4], r(4, 5)),                         # padded rows (ld > cols)
        (r(2, 3, 4), r(2, 4, 5)),                          # batched
        (r(2, 3, 4), r(4, 5)),                             # broadcast right
        (r(1, 3, 4), r(3, 4, 2)),                          # broadcast left
        (qh, kh.transpose(0, 1, 3, 2)),                    # attention scores from packed qkv
        (r(2, 2, 3, 4).transpose(1, 0, 2, 3), r(2, 2, 4, 2)),   # batch axes out of order
        (r(1, 4), r(4, 1)),
        (r(3, 1), r(1, 5)),
        (r(2, 3, 4)[:, ::2], r(4, 3)),                     # strided rows
        (w.T[None], r(3, 4, 2)),
        (xp.broadcast_to(r(1, 1)[0, 0], (1, 1)), r(1, 3)),   # one element, strides (0, 0)
        (r(3, 1), r(1)[::-1][None, :]),                    # one element, a reversed view
    ]


@pytest.mark.parametrize("case", range(16))
def test_gemm_plan_reproduces_matmul(case):
    a, b = layouts(np.random.default_rng(case))[case]
    np.testing.assert_allclose(emulate(a, b), a @ b, rtol=1e-12, atol=1e-12)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cublas_matmul_equals_cupy(dtype):
    cp = minitx.backend.array_module("gpu")
    cases = zip(layouts(np.random.default_rng(0), dtype=dtype), layouts(np.random.default_rng(0), cp, dtype))
    for case, ((a, b), (da, db)) in enumerate(cases):     # the same views, on the host and the device
        got = cublas.matmul(da, db).get()
        tol = 1e-12 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(got, a @ b, rtol=tol, atol=tol, err_msg=str(case))
    v = cp.arange(4, dtype=dtype)
    m = cp.ones((4, 3), dtype=dtype)
    np.testing.assert_allclose(cublas.matmul(v, m).get(), np.arange(4.0) @ np.ones((4, 3)))
    np.testing.assert_allclose(cublas.matmul(m.T, v).get(), np.ones((3, 4)) @ np.arange(4.0))
