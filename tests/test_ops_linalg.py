"""matmul (batched, broadcasting batch dims, 1-D operands) and linear."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minitx
from minitx.testing import arrays


def tensor(a, device, grad=False):
    return minitx.tensor(np.asarray(a, dtype=np.float64), device=device, requires_grad=grad)


# numpy's own matmul signature "(n?,k),(k,m?)->(n?,m?)": the "?" axes may be
# missing (1-D operands); up to two broadcasting batch axes in front
MATMUL_SHAPES = hnp.mutually_broadcastable_shapes(signature=np.matmul.signature, max_dims=2, max_side=4)


@given(shapes=MATMUL_SHAPES, data=st.data())
def test_matmul_matches_numpy_and_gradients(device, shapes, data):
    shape_a, shape_b = shapes.input_shapes
    a, b = data.draw(arrays(shape_a)), data.draw(arrays(shape_b))
    x, y = tensor(a, device, grad=True), tensor(b, device, grad=True)
    out = minitx.matmul(x, y)
    assert out.shape == shapes.result_shape
    np.testing.assert_allclose(out.numpy(), np.matmul(a, b), rtol=1e-12, atol=1e-12)
    assert minitx.gradcheck(minitx.matmul, x, y)
    assert x.grad.shape == shape_a and y.grad.shape == shape_b


@given(data=st.data())
def test_matmul_batched_with_broadcast_batch_axes(device, data):
    # (B, 1, m, k) @ (H, k, n): both batch axes broadcast
    B, H, m, k, n = (data.draw(st.integers(1, 3)) for _ in range(5))
    a, b = data.draw(arrays((B, 1, m, k))), data.draw(arrays((H, k, n)))
    x, y = tensor(a, device, grad=True), tensor(b, device, grad=True)
    assert (x @ y).shape == (B, H, m, n)
    assert minitx.gradcheck(lambda p, q: p @ q, x, y)


@pytest.mark.parametrize("shape_a,shape_b,result", [
    ((3,), (3,), ()),                 # dot product
    ((3,), (3, 2), (2,)),             # row vector @ matrix
    ((2, 3), (3,), (2,)),             # matrix @ column vector
    ((3,), (4, 3, 2), (4, 2)),        # vector @ batch
    ((4, 2, 3), (3,), (4, 2)),        # batch @ vector
])
def test_matmul_one_dimensional_operands(device, shape_a, shape_b, result):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(shape_a), rng.standard_normal(shape_b)
    x, y = tensor(a, device, grad=True), tensor(b, device, grad=True)
    out = minitx.matmul(x, y)
    assert out.shape == result
    np.testing.assert_allclose(out.numpy(), np.matmul(a, b), rtol=1e-12)
    assert minitx.gradcheck(minitx.matmul, x, y)


def test_matmul_with_a_constant_array_operand(T):
    w = np.arange(6.0).reshape(3, 2)
    x = T(np.ones((2, 3)), grad=True)
    (x @ w).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.tile(w.sum(1), (2, 1)))


@pytest.mark.parametrize("shape_a,shape_b", [
    ((2, 3), (4, 5)),                 # inner sizes differ
    ((2, 2, 3), (3, 3, 5)),           # batch sizes 2 and 3 do not broadcast
    ((3,), (4,)),                     # 1-D lengths differ
])
def test_matmul_incompatible_shapes_name_both(T, shape_a, shape_b):
    with pytest.raises(minitx.ShapeError) as info:
        minitx.matmul(T(np.ones(shape_a)), T(np.ones(shape_b)))
    message = str(info.value)
    assert "matmul" in message
    # the message names the shapes as the user passed them or as the 2-D views of 1-D operands
    for shape in (shape_a, shape_b):
        views = {str(shape), str((1,) + shape), str(shape + (1,))}
        assert any(v in message for v in views), (shape, message)


def test_matmul_rejects_zero_dimensional_operands(T):
    with pytest.raises(minitx.ShapeError, match="at least one dimension"):
        minitx.matmul(T(2.0), T(np.ones(3)))


@given(data=st.data(), with_bias=st.booleans())
def test_linear(device, data, with_bias):
    lead = tuple(data.draw(st.lists(st.integers(1, 3), max_size=2)))
    n_in, n_out = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    a, w, b = data.draw(arrays(lead + (n_in,))), data.draw(arrays((n_out, n_in))), data.draw(arrays((n_out,)))
    x, W, bias = (tensor(v, device, grad=True) for v in (a, w, b))
    expected = a @ w.T + (b if with_bias else 0.0)
    if with_bias:
        np.testing.assert_allclose(minitx.linear(x, W, bias).numpy(), expected, rtol=1e-12, atol=1e-12)
        assert minitx.gradcheck(minitx.linear, x, W, bias)
    else:
        np.testing.assert_allclose(minitx.linear(x, W).numpy(), expected, rtol=1e-12, atol=1e-12)
        assert minitx.gradcheck(minitx.linear, x, W)


def test_linear_shape_mismatch_raises(T):
    with pytest.raises(minitx.ShapeError, match=r"\(2, 3\).*\(4, 5\)"):
        minitx.linear(T(np.ones((2, 3))), T(np.ones((4, 5))))
