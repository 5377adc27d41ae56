"""The autograd engine: graph recording, backward, accumulation, freeing,
no_grad / detach, in-place checks and broadcasting un-reduction."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitx
from minitx.testing import arrays, broadcastable_shapes


def tensor(a, device, grad=False):
    return minitx.tensor(np.asarray(a, dtype=np.float64), device=device, requires_grad=grad)


def test_simple_backward(T):
    a = np.arange(6.0).reshape(2, 3)
    x = T(a, grad=True)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * a)


def test_chain_of_ten_thousand_ops(T):
    x = T([1.0, 2.0], grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.sum().backward()                              # iterative: no RecursionError
    np.testing.assert_allclose(x.grad.numpy(), [1.0001 ** 10_000] * 2, rtol=1e-9)


def test_gradients_accumulate_over_two_backward_calls(T):
    x = T([1.0, -2.0, 3.0], grad=True)
    (x * x).sum().backward()
    (3 * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.array([1.0, -2.0, 3.0]) + 3)
    x.zero_grad()
    assert x.grad is None


def test_leaf_gradients_are_private_and_writable(T):
    # Add hands the same array to both inputs and Sum a broadcast view: each leaf
    # must still own a gradient it can change without touching the other's
    x, y = T(np.ones((2, 3)), grad=True), T(np.ones((2, 3)), grad=True)
    (x + y).sum().backward()
    with minitx.no_grad():
        x.grad.mul_(2.0)
    np.testing.assert_array_equal(x.grad.numpy(), np.full((2, 3), 2.0))
    np.testing.assert_array_equal(y.grad.numpy(), np.ones((2, 3)))


def test_diamond_graph_sums_both_paths(T):
    x = T([2.0, -1.0], grad=True)
    y = x * x                                       # x used twice, then y used twice
    z = (y + 3 * y + x).sum()
    z.backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * 2 * np.array([2.0, -1.0]) + 1)


def test_same_tensor_as_both_operands(T):
    x = T([3.0], grad=True)
    (x * x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [27.0])


def test_only_leaves_that_require_grad_get_gradients(T):
    x, c = T([1.0, 2.0], grad=True), T([5.0, 6.0])
    h = x * c
    (h * 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [10.0, 12.0])
    assert c.grad is None and h.grad is None        # constants and intermediates keep none
    assert not c.requires_grad and h.requires_grad and not h.is_leaf


def test_unreached_leaf_keeps_no_gradient(T):
    x, unused = T([1.0], grad=True), T([1.0], grad=True)
    _ = unused * 2
    (x * 2).sum().backward()
    assert unused.grad is None


# ------------------------------------------------------------- grad mode
def test_no_grad_records_nothing(T):
    x = T([1.0, 2.0], grad=True)
    with minitx.no_grad():
        assert not minitx.is_grad_enabled()
        y = (x * 2).exp().sum()
    assert minitx.is_grad_enabled()
    assert y.requires_grad is False and y.creator is None
    with pytest.raises(minitx.GraphError, match="does not require grad"):
        y.backward()


def test_no_grad_as_decorator_and_enable_grad_inside(T):
    x = T([1.0], grad=True)

    @minitx.no_grad()
    def f(t):
        with minitx.enable_grad():
            inner = t * 2
        return t * 2, inner

    outer, inner = f(x)
    assert outer.creator is None and inner.creator is not None
    assert minitx.is_grad_enabled()


def test_no_grad_restores_mode_after_an_exception(T):
    with pytest.raises(ZeroDivisionError):
        with minitx.no_grad():
            1 / 0
    assert minitx.is_grad_enabled()


def test_detach_cuts_the_graph(T):
    x = T([1.0, 2.0], grad=True)
    y = x * 3
    d = y.detach()
    assert d.requires_grad is False and d.creator is None and d.is_leaf
    np.testing.assert_array_equal(d.numpy(), y.numpy())
    (x * d).sum().backward()                         # d is a constant: d/dx (x * d) = d
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 6.0])


def test_ops_on_constants_do_not_require_grad(T):
    y = T([1.0]) * T([2.0])
    assert not y.requires_grad and y.creator is None


def test_integer_tensors_cannot_require_grad(device):
    with pytest.raises(minitx.DTypeError, match="floating-point"):
        minitx.tensor(np.array([1, 2]), device=device, requires_grad=True)


# ------------------------------------------------------- freed graph, retain
def test_backward_twice_through_freed_graph_raises(T):
    x = T([1.0, 2.0], grad=True)
    loss = (x * x).sum()
    loss.backward()
    with pytest.raises(minitx.GraphError, match="retain_graph"):
        loss.backward()


def test_reusing_part_of_a_freed_graph_raises(T):
    x = T([1.0, 2.0], grad=True)
    h = x.exp()
    h.sum().backward()
    with pytest.raises(minitx.GraphError, match="retain_graph=True"):
        (h * 2).sum().backward()


def test_retain_graph_allows_a_second_backward(T):
    x = T([1.0, 2.0], grad=True)
    loss = (x * x).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * 2 * np.array([1.0, 2.0]))


# ---------------------------------------------------------- non-scalar roots
def test_non_scalar_backward_needs_a_gradient(T):
    x = T([1.0, 2.0, 3.0], grad=True)
    y = x * x
    with pytest.raises(minitx.GraphError, match=r"non-scalar.*\(3,\)"):
        y.backward()
    y.backward(np.array([1.0, 0.5, -1.0]))
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.array([1.0, 2.0, 3.0]) * [1.0, 0.5, -1.0])


def test_explicit_gradient_as_tensor_and_wrong_shape(T):
    x = T(np.ones((2, 2)), grad=True)
    y = x * 3
    with pytest.raises(minitx.GraphError, match="does not match"):
        y.backward(T(np.ones(3)), retain_graph=True)
    y.backward(T(np.full((2, 2), 2.0)))
    np.testing.assert_array_equal(x.grad.numpy(), np.full((2, 2), 6.0))


def test_backward_on_a_leaf_seeds_its_own_gradient(T):
    x = T([4.0], grad=True)
    x.backward()
    x.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0])


# ------------------------------------------------------------------ in place
@pytest.mark.parametrize("mutate", [
    lambda t: t.add_(1),
    lambda t: t.__setitem__(0, 5.0),
    lambda t: t.mul_(2.0),
    lambda t: t.fill_(0.0),
    lambda t: t.copy_(minitx.zeros(3, dtype=np.float64, device=t.device)),
])
def test_in_place_change_of_a_saved_input_makes_backward_raise(T, mutate):
    x = T([1.0, 2.0, 3.0])                            # saved by Mul, requires no grad
    w = T([1.0, 1.0, 1.0], grad=True)
    loss = (x * w).sum()
    mutate(x)
    with pytest.raises(minitx.GraphError, match=r"input 0 of Mul.*modified in place"):
        loss.backward()


def test_assigning_data_counts_as_in_place(T):
    x, w = T([1.0, 2.0]), T([1.0, 1.0], grad=True)
    loss = (w * x).sum()
    x.data = x.data * 2
    with pytest.raises(minitx.GraphError, match="input 1 of Mul"):
        loss.backward()


def test_in_place_change_after_backward_is_fine(T):
    x, w = T([1.0, 2.0]), T([1.0, 1.0], grad=True)
    (x * w).sum().backward()
    x.add_(1)
    np.testing.assert_array_equal(w.grad.numpy(), [1.0, 2.0])


def test_ops_that_save_no_input_ignore_in_place_changes(T):
    x, w = T([1.0, 2.0]), T([1.0, 1.0], grad=True)
    loss = (x + w).sum()                              # Add's backward reads no input value
    x.add_(1)
    loss.backward()
    np.testing.assert_array_equal(w.grad.numpy(), [1.0, 1.0])


def test_in_place_on_a_tensor_requiring_grad_raises_under_grad_mode(T):
    w = T([1.0, 2.0], grad=True)
    for mutate in (lambda: w.add_(1), lambda: w.__setitem__(0, 3.0), lambda: w.zero_()):
        with pytest.raises(minitx.GraphError, match="no_grad"):
            mutate()
    with minitx.no_grad():                            # an optimizer step is allowed
        w.add_(T([1.0, 1.0]), alpha=-0.5)
    np.testing.assert_array_equal(w.numpy(), [0.5, 1.5])


# -------------------------------------------------------- broadcast un-reduction
@pytest.mark.parametrize("name", ["add", "sub", "mul", "div"])
def test_row_broadcast_gradients(T, name):
    op = getattr(minitx, name)
    a = np.array([[1.0, 2.0, 4.0]])                  # (1, D)
    b = np.arange(1.0, 7.0).reshape(2, 3)            # (B, D)
    x, y = T(a, grad=True), T(b, grad=True)
    op(x, y).sum().backward()
    ga, gb = {
        "add": (np.full((1, 3), 2.0), np.ones((2, 3))),
        "sub": (np.full((1, 3), 2.0), -np.ones((2, 3))),
        "mul": (b.sum(0, keepdims=True), np.broadcast_to(a, (2, 3))),
        "div": ((1 / b).sum(0, keepdims=True), -a / b ** 2),
    }[name]
    np.testing.assert_allclose(x.grad.numpy(), ga, rtol=1e-12)
    np.testing.assert_allclose(y.grad.numpy(), gb, rtol=1e-12)


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div"])
def test_scalar_and_leading_dim_broadcast_gradients(T, name):
    op = getattr(minitx, name)
    rng = np.random.default_rng(1)
    s = T(1.5, grad=True)                            # 0-d
    v = T(rng.uniform(1, 2, 4), grad=True)           # (D,) against (B, T, D)
    m = T(rng.uniform(1, 2, (2, 3, 4)), grad=True)
    assert minitx.gradcheck(op, s, m) and minitx.gradcheck(op, m, s)
    assert minitx.gradcheck(op, v, m) and minitx.gradcheck(op, m, v)
    s.grad = v.grad = None
    op(op(m, v), s).sum().backward()
    assert s.grad.shape == () and v.grad.shape == (4,)


@given(shapes=broadcastable_shapes(), data=st.data())
def test_broadcast_gradients_are_sums_over_broadcast_axes(device, shapes, data):
    shape_a, shape_b = shapes
    a, b = data.draw(arrays(shape_a)), data.draw(arrays(shape_b))
    x, y = tensor(a, device, grad=True), tensor(b, device, grad=True)
    (x + y).sum().backward()
    out_size = np.broadcast(a, b).size
    # each element of x is used out_size / x.size times
    np.testing.assert_array_equal(x.grad.numpy(), np.full(shape_a, out_size / max(a.size, 1)))
    np.testing.assert_array_equal(y.grad.numpy(), np.full(shape_b, out_size / max(b.size, 1)))
