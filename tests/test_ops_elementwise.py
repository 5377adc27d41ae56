"""Elementwise ops: values against NumPy, gradients against finite differences
(float64, Hypothesis shapes with size-1 and broadcast axes), GELU precision."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitx
from minitx.testing import arrays, bool_masks, broadcastable_shapes, shapes


def tensor(a, device, grad=False, dtype=np.float64):
    return minitx.tensor(np.asarray(a, dtype=dtype), device=device, requires_grad=grad)


def away_from_zero(a, margin=0.25):
    """``a`` with every |value| < margin pushed out to +-(margin + |value|)."""
    return np.where(np.abs(a) < margin, np.where(a < 0, -1.0, 1.0) * (margin + np.abs(a)), a)


# ------------------------------------------------------- broadcasting binary ops
BINARY = {
    "add": (minitx.add, np.add),
    "sub": (minitx.sub, np.subtract),
    "mul": (minitx.mul, np.multiply),
    "div": (minitx.div, np.divide),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(data=st.data())
def test_binary_op_values_and_gradients(device, name, data):
    op, ref = BINARY[name]
    shape_a, shape_b = data.draw(broadcastable_shapes())
    a = data.draw(arrays(shape_a))
    b = data.draw(arrays(shape_b))
    if name == "div":
        b = away_from_zero(b, 0.5)
    x, y = tensor(a, device, grad=True), tensor(b, device, grad=True)
    out = op(x, y)
    np.testing.assert_allclose(out.numpy(), ref(a, b), rtol=1e-12, atol=1e-12)
    assert minitx.gradcheck(op, x, y)
    # the gradients come back in each input's own shape (broadcast axes summed)
    op(x, y).sum().backward()
    assert x.grad.shape == shape_a and y.grad.shape == shape_b


@given(a=arrays(shapes()), s=st.floats(-2, 2).filter(lambda s: abs(s) > 0.25))
def test_python_scalar_operands(device, a, s):
    x = tensor(a, device, grad=True)
    for fn, ref in [(lambda t: t + s, a + s), (lambda t: s + t, s + a),
                    (lambda t: t - s, a - s), (lambda t: s - t, s - a),
                    (lambda t: t * s, a * s), (lambda t: s * t, s * a),
                    (lambda t: t / s, a / s)]:
        np.testing.assert_allclose(fn(x).numpy(), ref, rtol=1e-12)
        assert minitx.gradcheck(fn, x)
    b = away_from_zero(a)
    y = tensor(b, device, grad=True)
    np.testing.assert_allclose((s / y).numpy(), s / b, rtol=1e-12)
    assert minitx.gradcheck(lambda t: s / t, y)


def test_scalar_operand_keeps_float32(device):
    x = minitx.tensor(np.ones(3, dtype=np.float32), device=device)
    assert (x * 2.5).dtype == np.float32 and (1.0 - x).dtype == np.float32


# ----------------------------------------------------------------- unary ops
@given(a=arrays(shapes()))
def test_neg(device, a):
    x = tensor(a, device, grad=True)
    np.testing.assert_array_equal((-x).numpy(), -a)
    assert minitx.gradcheck(minitx.neg, x)


@given(a=arrays(shapes(), min_value=0.2, max_value=3.0),
       p=st.sampled_from([2, 3, 0.5, -1, -1.5, 2.5]))
def test_pow_positive_base(device, a, p):
    x = tensor(a, device, grad=True)
    np.testing.assert_allclose((x ** p).numpy(), a ** p, rtol=1e-12)
    assert minitx.gradcheck(lambda t: t ** p, x)


@given(a=arrays(shapes()), p=st.sampled_from([1, 2, 3, 4]))
def test_pow_integer_exponent_any_sign(device, a, p):
    x = tensor(a, device, grad=True)
    np.testing.assert_allclose(minitx.pow(x, p).numpy(), a ** p, rtol=1e-12, atol=1e-12)
    assert minitx.gradcheck(lambda t: minitx.pow(t, p), x)


def test_pow_rejects_tensor_exponent(T):
    with pytest.raises(TypeError, match="exponent"):
        minitx.pow(T([2.0]), T([3.0]))


UNARY = {
    # name: (op, numpy reference, lowest input value)
    "exp": (minitx.exp, np.exp, -3.0),
    "log": (minitx.log, np.log, 0.1),
    "sqrt": (minitx.sqrt, np.sqrt, 0.1),
    "tanh": (minitx.tanh, np.tanh, -3.0),
    "sigmoid": (minitx.sigmoid, lambda a: 1 / (1 + np.exp(-a)), -3.0),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(data=st.data())
def test_unary_op_values_and_gradients(device, name, data):
    op, ref, low = UNARY[name]
    a = data.draw(arrays(shapes(), min_value=low, max_value=3.0))
    x = tensor(a, device, grad=True)
    np.testing.assert_allclose(op(x).numpy(), ref(a), rtol=1e-12, atol=1e-14)
    assert minitx.gradcheck(op, x)


def test_sigmoid_and_tanh_saturate_without_overflow(T):
    x = T([-1000.0, -50.0, 0.0, 50.0, 1000.0], grad=True)
    s = minitx.sigmoid(x)
    np.testing.assert_allclose(s.numpy(), [0.0, 1 / (1 + math.exp(50)), 0.5, 1 / (1 + math.exp(-50)), 1.0],
                               rtol=1e-12, atol=0)
    (s.sum() + minitx.tanh(x).sum()).backward()
    assert np.isfinite(x.grad.numpy()).all()


@pytest.mark.parametrize("dtype,low,rtol", [(np.float32, -80.0, 1e-6), (np.float64, -700.0, 1e-13)])
def test_sigmoid_keeps_relative_precision_for_negative_inputs(device, dtype, low, rtol):
    a = np.linspace(low, 30.0, 4001).astype(dtype)
    ref = np.array([1.0 / (1.0 + math.exp(-v)) for v in a.astype(float)])
    y = minitx.sigmoid(minitx.tensor(a, device=device)).numpy()
    assert y.dtype == dtype
    np.testing.assert_allclose(y, ref, rtol=rtol, atol=0)


@given(a=arrays(shapes()))
def test_relu_away_from_zero(device, a):
    a = away_from_zero(a, 0.1)          # finite differences straddling the kink would be wrong
    x = tensor(a, device, grad=True)
    np.testing.assert_array_equal(minitx.relu(x).numpy(), np.maximum(a, 0))
    assert minitx.gradcheck(minitx.relu, x)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@given(a=arrays(shapes(), min_value=-5.0, max_value=5.0))
def test_gelu_gradients(device, approximate, a):
    x = tensor(a, device, grad=True)
    assert minitx.gradcheck(lambda t: minitx.gelu(t, approximate=approximate), x)


def _gelu_reference(a):
    """x * Phi(x) with math.erf, in float64."""
    return np.array([v * 0.5 * (1.0 + math.erf(v / math.sqrt(2.0))) for v in np.ravel(a).astype(float)]
                    ).reshape(np.shape(a))


@given(a=arrays(shapes(), min_value=-8.0, max_value=8.0))
def test_gelu_matches_math_erf_in_float64(device, a):
    y = minitx.gelu(tensor(a, device)).numpy()
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, _gelu_reference(a), rtol=1e-12, atol=1e-12)


def _assert_float32_accurate(y, a):
    """Error within 3 float32 eps * max(|x|, 1): PyTorch's own float32 GELU reaches 2.9."""
    err = np.abs(y.astype(np.float64) - _gelu_reference(a))
    bound = 3 * np.finfo(np.float32).eps * np.maximum(np.abs(a.astype(np.float64)), 1.0)
    assert (err <= bound).all(), f"worst error {err.max():.3g} at x = {a.flat[np.argmax(err - bound)]}"


@given(a=arrays(shapes(), dtype=np.float32, min_value=-8.0, max_value=8.0))
def test_gelu_matches_math_erf_to_float32_precision(device, a):
    y = minitx.gelu(minitx.tensor(a, device=device)).numpy()
    assert y.dtype == np.float32
    _assert_float32_accurate(y, a)


def test_gelu_float32_dense_sweep(device):
    # Hypothesis may miss the worst inputs; a dense sweep over the tails does not
    a = np.linspace(-8, 8, 16001, dtype=np.float32)
    y = minitx.gelu(minitx.tensor(a, device=device)).numpy()
    _assert_float32_accurate(y, a)


@pytest.mark.parametrize("block", [7, 1000, 1 << 16])
def test_gelu_float32_derivative_in_blocks(block):
    """The float32 CPU path: values and the derivative kept for backward, in blocks of any size."""
    a = np.linspace(-8, 8, 4001, dtype=np.float32)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(minitx.backend, "CACHE_BLOCK", block)
        x = minitx.tensor(a, requires_grad=True)
        y = minitx.gelu(x)
        y.sum().backward()
        with minitx.no_grad():
            y_no_grad = minitx.gelu(minitx.tensor(a)).numpy()
    _assert_float32_accurate(y.numpy(), a)
    np.testing.assert_array_equal(y_no_grad, y.numpy())
    ad = a.astype(np.float64)
    cdf = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in ad])
    deriv = cdf + ad * np.exp(-0.5 * ad * ad) / math.sqrt(2.0 * math.pi)     # Phi + x phi
    assert x.grad.dtype == np.float32
    assert np.abs(x.grad.numpy() - deriv).max() <= 1e-6


def test_gelu_tanh_formula(T):
    a = np.linspace(-6, 6, 101)
    ref = 0.5 * a * (1 + np.tanh(math.sqrt(2 / math.pi) * (a + 0.044715 * a ** 3)))
    np.testing.assert_allclose(minitx.gelu(T(a), approximate="tanh").numpy(), ref, rtol=1e-12, atol=1e-15)


def test_gelu_rejects_unknown_approximation(T):
    with pytest.raises(ValueError, match="approximate"):
        minitx.gelu(T([1.0]), approximate="erf")


# ------------------------------------------------------ conversions and copies
@given(a=arrays(shapes()))
def test_clone_and_astype_pass_gradients(device, a):
    x = tensor(a, device, grad=True)
    assert minitx.gradcheck(minitx.clone, x)
    x.grad = None                       # gradcheck leaves its own gradient behind
    y = x.float()
    assert y.dtype == np.float32
    (y * 2).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad.numpy(), np.full(a.shape, 2.0))


def test_clone_owns_its_memory(T):
    x = T([1.0, 2.0])
    y = x.clone()
    y.add_(1)
    np.testing.assert_array_equal(x.numpy(), [1.0, 2.0])


# ------------------------------------------------------- where / masked_fill
@given(data=st.data())
def test_where_with_broadcasting(device, data):
    shape_c, shape_a, shape_b = data.draw(broadcastable_shapes(num_shapes=3))
    cond = data.draw(bool_masks(shape_c))
    a, b = data.draw(arrays(shape_a)), data.draw(arrays(shape_b))
    x, y = tensor(a, device, grad=True), tensor(b, device, grad=True)
    c = minitx.tensor(cond, device=device)
    np.testing.assert_array_equal(minitx.where(c, x, y).numpy(), np.where(cond, a, b))
    assert minitx.gradcheck(lambda p, q: minitx.where(c, p, q), x, y)


@given(data=st.data())
def test_where_with_a_scalar_branch(device, data):
    shape = data.draw(shapes())
    cond, a = data.draw(bool_masks(shape)), data.draw(arrays(shape))
    x, c = tensor(a, device, grad=True), minitx.tensor(cond, device=device)
    np.testing.assert_array_equal(minitx.where(c, x, 0.5).numpy(), np.where(cond, a, 0.5))
    np.testing.assert_array_equal(minitx.where(c, 0.5, x).numpy(), np.where(cond, 0.5, a))
    minitx.where(c, x, 0.5).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), cond.astype(float))


@given(data=st.data())
def test_masked_fill_with_broadcast_mask(device, data):
    shape_x, shape_m = data.draw(broadcastable_shapes())
    a, mask = data.draw(arrays(shape_x)), data.draw(bool_masks(shape_m))
    x, m = tensor(a, device, grad=True), minitx.tensor(mask, device=device)
    out = x.masked_fill(m, -2.0)
    np.testing.assert_array_equal(out.numpy(), np.where(mask, -2.0, a))
    assert minitx.gradcheck(lambda t: minitx.masked_fill(t, m, -2.0), x)


def test_masked_fill_with_large_negative_value(T):
    x = T([[1.0, 2.0, 3.0]], grad=True)
    mask = minitx.tensor(np.array([False, True, False]), device=x.device)
    out = x.masked_fill(mask, np.finfo(np.float64).min)
    assert out.numpy()[0, 1] == np.finfo(np.float64).min
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[1.0, 0.0, 1.0]])


def test_where_and_masked_fill_need_boolean_masks(T):
    x = T([1.0, 2.0])
    with pytest.raises(minitx.DTypeError, match="boolean"):
        minitx.where(T([1.0, 0.0]), x, x)
    with pytest.raises(minitx.DTypeError, match="boolean"):
        x.masked_fill(T([1.0, 0.0]), 0.0)
