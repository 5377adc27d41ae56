"""Reductions (sum, mean, max, logsumexp) over any axes, with and without keepdims."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitx
from minitx.testing import arrays, shapes


def tensor(a, device, grad=False):
    return minitx.tensor(np.asarray(a, dtype=np.float64), device=device, requires_grad=grad)


@st.composite
def axes_for(draw, ndim):
    """None, one axis (negative allowed) or a tuple of distinct axes of an ``ndim`` array."""
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    picked = draw(st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim))
    return tuple(a - ndim if draw(st.booleans()) else a for a in picked)   # mix in negatives


@st.composite
def distinct_arrays(draw, shape):
    """Float arrays whose values are all different (no ties for max), spaced >= 0.1 apart."""
    n = int(np.prod(shape))
    order = draw(st.permutations(range(n)))
    jitter = draw(arrays((n,), min_value=0.0, max_value=0.05))
    return ((np.array(order, dtype=float) + jitter) * (6.0 / max(n, 1)) - 3.0).reshape(shape)


REDUCTIONS = {
    "sum": (minitx.sum, np.sum),
    "mean": (minitx.mean, np.mean),
}


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@given(data=st.data(), keepdims=st.booleans())
def test_sum_and_mean(device, name, data, keepdims):
    op, ref = REDUCTIONS[name]
    a = data.draw(arrays(shapes()))
    axis = data.draw(axes_for(a.ndim))
    x = tensor(a, device, grad=True)
    out = op(x, axis, keepdims)
    np.testing.assert_allclose(out.numpy(), ref(a, axis=axis, keepdims=keepdims), rtol=1e-12, atol=1e-12)
    assert minitx.gradcheck(lambda t: op(t, axis=axis, keepdims=keepdims), x)
    assert x.grad.shape == a.shape
    # exactly: d sum / dx = 1, d mean / dx = 1 / (number of elements averaged)
    x.grad = None
    op(x, axis, keepdims).sum().backward()
    count = a.size / max(np.sum(a, axis=axis, keepdims=True).size, 1) if name == "mean" else 1.0
    np.testing.assert_allclose(x.grad.numpy(), np.full(a.shape, 1.0 / count), rtol=1e-14)


@given(data=st.data(), keepdims=st.booleans())
def test_max_without_ties(device, data, keepdims):
    shape = data.draw(shapes())
    a = data.draw(distinct_arrays(shape))
    axis = data.draw(axes_for(a.ndim))
    x = tensor(a, device, grad=True)
    out = minitx.max(x, axis, keepdims)
    np.testing.assert_array_equal(out.numpy(), np.max(a, axis=axis, keepdims=keepdims))
    assert minitx.gradcheck(lambda t: minitx.max(t, axis=axis, keepdims=keepdims), x)


def test_max_splits_gradient_between_ties(T):
    x = T([[1.0, 3.0, 3.0], [2.0, 0.0, -1.0]], grad=True)
    x.max(axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])


@given(data=st.data(), keepdims=st.booleans())
def test_logsumexp(device, data, keepdims):
    a = data.draw(arrays(shapes()))
    axis = data.draw(axes_for(a.ndim))
    x = tensor(a, device, grad=True)
    out = minitx.logsumexp(x, axis, keepdims)
    np.testing.assert_allclose(out.numpy(), np.log(np.sum(np.exp(a), axis=axis, keepdims=keepdims)),
                               rtol=1e-12, atol=1e-12)
    assert minitx.gradcheck(lambda t: minitx.logsumexp(t, axis=axis, keepdims=keepdims), x)


@given(a=arrays(shapes(min_dims=2, max_dims=2), min_value=-5.0, max_value=5.0),
       offset=st.sampled_from([1e4, -1e4, 1000.0]))
def test_logsumexp_is_stable_for_large_logits(device, a, offset):
    x = tensor(a + offset, device, grad=True)
    out = minitx.logsumexp(x, axis=-1)
    expected = offset + np.log(np.exp(a).sum(-1))        # shifting by a constant shifts the result
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)
    out.sum().backward()
    p = np.exp(a - a.max(-1, keepdims=True))
    np.testing.assert_allclose(x.grad.numpy(), p / p.sum(-1, keepdims=True), rtol=1e-9, atol=1e-12)


def test_logsumexp_rows_masked_with_finfo_min(T):
    low = np.finfo(np.float64).min
    x = T([[low, 0.0, 1.0], [low, low, low], [1e4, low, 1e4]], grad=True)
    out = minitx.logsumexp(x, axis=-1)
    y = out.numpy()
    np.testing.assert_allclose(y[0], np.log(1 + np.e), rtol=1e-12)
    assert np.isfinite(y[1])                       # a fully masked row stays finite
    np.testing.assert_allclose(y[2], 1e4 + np.log(2), rtol=1e-12)
    out.sum().backward()
    g = x.grad.numpy()
    assert np.isfinite(g).all()
    np.testing.assert_allclose(g[0], [0.0, 1 / (1 + np.e), np.e / (1 + np.e)], rtol=1e-12)
    np.testing.assert_allclose(g[2], [0.5, 0.0, 0.5], rtol=1e-12)


def test_reductions_reject_out_of_range_axes(T):
    x = T(np.ones((2, 3)))
    for op in (minitx.sum, minitx.mean, minitx.max, minitx.logsumexp):
        with pytest.raises(minitx.ShapeError, match="axis 2 is out of range"):
            op(x, axis=2)
        with pytest.raises(minitx.ShapeError, match="out of range"):
            op(x, axis=(0, -3))


def test_tensor_methods_match_functions(T):
    a = np.arange(24.0).reshape(2, 3, 4) / 7
    x = T(a)
    np.testing.assert_allclose(x.sum(axis=1).numpy(), a.sum(1))
    np.testing.assert_allclose(x.mean(axis=(0, 2), keepdims=True).numpy(), a.mean((0, 2), keepdims=True))
    np.testing.assert_allclose(x.max(axis=-1).numpy(), a.max(-1))
    np.testing.assert_allclose(x.logsumexp(axis=0).numpy(), np.log(np.exp(a).sum(0)))
    assert x.sum().shape == () and x.mean(axis=()).shape == a.shape
