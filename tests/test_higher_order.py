"""Second derivatives (backward(create_graph=True)) against finite differences of the first.

For f and a fixed random weighting v of its first gradients g_i = df/dx_i,
s(x) = sum_i <g_i(x), v_i>.  Double backward gives ds/dx (a Hessian-vector
product); central differences of s, evaluated with plain first-order backward,
give the same numbers.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minitx
from minitx.autograd.higher_order import grad
from minitx.testing import arrays, broadcastable_shapes, shapes


def _weighted_grad(f, xs, vs, create_graph):
    gs = grad(f(*xs), xs, create_graph=create_graph)
    terms = [(g * v).sum() for g, v in zip(gs, vs) if g is not None]
    return sum(terms[1:], terms[0]) if terms else None


def check_second_derivative(f, *xs, eps=1e-6, atol=1e-5, rtol=1e-4, seed=0):
    """Assert d/dx_j sum_i <df/dx_i, v_i> by double backward == central differences."""
    rng = np.random.default_rng(seed)
    vs = [minitx.tensor(rng.standard_normal(x.shape), device=x.device) for x in xs]
    s = _weighted_grad(f, xs, vs, create_graph=True)
    if s is not None and s.requires_grad:
        analytic = [np.zeros(x.shape) if h is None else h.numpy() for x, h in zip(xs, grad(s, xs))]
    else:                                        # first gradient is constant: second is zero
        analytic = [np.zeros(x.shape) for x in xs]
    for x, a in zip(xs, analytic):
        numeric = np.zeros(x.shape)
        for idx in np.ndindex(*x.shape):
            orig = x.data[idx].item()
            vals = []
            for shift in (eps, -eps):
                x.data[idx] = orig + shift
                w = _weighted_grad(f, xs, vs, create_graph=False)
                vals.append(0.0 if w is None else w.item())
            x.data[idx] = orig
            numeric[idx] = (vals[0] - vals[1]) / (2 * eps)
        np.testing.assert_allclose(a, numeric, atol=atol, rtol=rtol)


def leaf(a, device):
    return minitx.tensor(np.asarray(a, dtype=np.float64), device=device, requires_grad=True)


def away_from_zero(a, low=0.3):
    return np.sign(a + 1e-12) * (low + np.abs(a))


UNARY = {
    "exp": (minitx.exp, None),
    "log": (minitx.log, lambda a: low_bounded(a)),
    "sqrt": (minitx.sqrt, lambda a: low_bounded(a)),
    "tanh": (minitx.tanh, None),
    "sigmoid": (minitx.sigmoid, None),
    "relu": (minitx.relu, away_from_zero),
    "neg": (minitx.neg, None),
    "cube": (lambda x: x ** 3, None),
    "pow_1.5": (lambda x: x ** 1.5, lambda a: low_bounded(a)),
    "square_of_x": (lambda x: x ** 2 * x, None),
}


def low_bounded(a):
    return 0.5 + np.abs(a)


@pytest.mark.parametrize("name", sorted(UNARY))
@given(a=arrays(shapes(max_dims=2, max_side=3)))
def test_unary_second_derivatives(device, name, a):
    op, fix = UNARY[name]
    x = leaf(fix(a) if fix else a, device)
    check_second_derivative(lambda x: (op(x) * x.tanh()).sum(), x)   # * tanh: cross terms too


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
@given(data=st.data())
def test_binary_second_derivatives_with_broadcasting(device, op, data):
    sa, sb = data.draw(broadcastable_shapes(max_dims=2, max_side=3))
    a, b = data.draw(arrays(sa)), data.draw(arrays(sb))
    if op == "div":
        b = away_from_zero(b, 0.5)
    f = getattr(minitx, op)
    check_second_derivative(lambda x, y: (f(x, y) * f(x, y)).sum(), leaf(a, device), leaf(b, device))


@given(data=st.data())
def test_matmul_second_derivatives(device, data):
    m, k, n = (data.draw(st.integers(1, 3)) for _ in range(3))
    batch = data.draw(st.sampled_from([(), (2,)]))
    a, b = data.draw(arrays(batch + (m, k))), data.draw(arrays((k, n)))
    check_second_derivative(lambda x, y: (minitx.matmul(x, y) ** 2).sum(), leaf(a, device), leaf(b, device))


@given(data=st.data())
def test_linear_second_derivatives(device, data):
    i, o = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    x, w, b = data.draw(arrays((2, i))), data.draw(arrays((o, i))), data.draw(arrays((o,)))
    check_second_derivative(lambda x, w, b: minitx.linear(x, w, b).tanh().sum(),
                            leaf(x, device), leaf(w, device), leaf(b, device))


@pytest.mark.parametrize("reduce", ["sum", "mean"])
@given(a=arrays(shapes(min_dims=2, max_dims=3, max_side=3)), axis=st.sampled_from([None, 0, -1, (0, 1)]),
       keepdims=st.booleans())
def test_sum_mean_second_derivatives(device, reduce, a, axis, keepdims):
    r = getattr(minitx, reduce)
    check_second_derivative(lambda x: (r(x * x, axis=axis, keepdims=keepdims) ** 2).sum(), leaf(a, device))


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@given(a=arrays(shapes(min_dims=1, max_dims=2, max_side=4)), axis=st.sampled_from([0, -1]))
def test_softmax_second_derivatives(device, op, a, axis):
    f = getattr(minitx, op)
    w = np.linspace(-1, 2, a.shape[axis]).reshape((-1,) + (1,) * (a.ndim - 1 if axis == 0 else 0))
    check_second_derivative(lambda x: (f(x, axis=axis) * w).sum(), leaf(a, device))


@given(a=arrays((2, 3, 2)))
def test_shape_ops_second_derivatives(device, a):
    def f(x):
        y = x.reshape(3, 4).transpose(0, 1).permute(1, 0)          # (3, 4)
        z = y[1:, ::2] * y.unsqueeze(0).expand(2, 3, 4)[1, :2, 1:3]  # getitem, expand
        c = minitx.concat([z, y[:2, :2]], axis=0)
        return (c * c.tanh()).sum() + minitx.stack([y, y], axis=1).tanh().sum()
    check_second_derivative(f, leaf(a, device))


@given(a=arrays((3, 4)), t=st.lists(st.integers(0, 3), min_size=3, max_size=3),
       smoothing=st.sampled_from([0.0, 0.1]), reduction=st.sampled_from(["mean", "sum", "none"]))
def test_cross_entropy_second_derivatives(device, a, t, smoothing, reduction):
    target = np.array(t[:2] + [-100])                                # one ignored row
    def f(x):
        return (minitx.cross_entropy(x, target, label_smoothing=smoothing, reduction=reduction) ** 2).sum()
    check_second_derivative(f, leaf(a, device))


@given(a=arrays((3, 4)), mask=hnp.arrays(np.bool_, (3, 4)))
def test_selection_and_fused_ops_second_derivatives(device, a, mask):
    from minitx.autograd.ops.nn import Dropout
    xp = minitx.backend.array_module(device)
    keep = xp.asarray(np.where(mask, 2.0, 0.0))                      # a fixed dropout mask
    idx = np.array([[0, 2], [2, 1]])
    mask = xp.asarray(mask)

    def f(x):
        y = minitx.where(mask, x, x * x).tanh() + minitx.masked_fill(x * x, ~mask, 0.5)
        z = minitx.clone(minitx.astype(y, np.float64))
        return (((z + np.arange(4) * 100.0).max(axis=1) * z.logsumexp(axis=0)[:3]).sum()   # no ties
                + (Dropout.apply(x, mask=keep) ** 3).sum()
                + (minitx.embedding(idx, x) ** 3).sum())               # x as a (3, 4) table
    check_second_derivative(f, leaf(a, device))


def test_known_values_and_graph_of_the_gradient(T):
    x = T([1.0, 2.0], grad=True)
    (x ** 3).sum().backward(create_graph=True)
    g = x.grad                                                       # 3 x^2, with a graph
    assert g.requires_grad and g.creator is not None
    np.testing.assert_allclose(g.numpy(), [3.0, 12.0])
    x.grad = None
    g.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [6.0, 12.0])          # 6 x
    (gg,) = grad(grad((x ** 4).sum(), [x], create_graph=True)[0].sum(), [x], create_graph=True)
    (ggg,) = grad(gg.sum(), [x])                                     # third derivative: 24 x
    np.testing.assert_allclose(ggg.numpy(), [24.0, 48.0])


def test_create_graph_keeps_the_graph_and_matches_plain_backward(T):
    a = np.array([[0.3, -1.2], [2.0, 0.5]])
    x = T(a, grad=True)
    loss = (x.tanh() @ x).softmax(-1).sum(axis=0).log().mean()
    loss.backward(create_graph=True)
    g1 = x.grad.numpy()
    loss.backward()                                                  # graph still there
    np.testing.assert_allclose(x.grad.numpy(), 2 * g1)
    x2 = T(a, grad=True)
    (x2.tanh() @ x2).softmax(-1).sum(axis=0).log().mean().backward()
    np.testing.assert_allclose(g1, x2.grad.numpy())


def test_op_without_backward_graph_names_it(T):
    x = T(np.ones((2, 4)), grad=True)
    w = T(np.ones(4), grad=True)
    loss = minitx.layer_norm(x * 2, w).sum()
    with pytest.raises(minitx.GraphError, match="LayerNorm has no backward_graph"):
        loss.backward(create_graph=True)


def test_create_graph_checks_in_place_changes(T):
    x = T([1.0, 2.0], grad=True)
    y = x * 1.0
    z = (y.exp()).sum()
    with minitx.no_grad():
        y.data[...] = 0
        y.bump_version()
    with pytest.raises(minitx.GraphError, match="modified in place"):
        z.backward(create_graph=True)


@given(data=st.data())
def test_row_ops_second_derivatives(device, data):
    """take_rows and put_rows: each one's backward_graph is the other, differentiable again
    (the incoming gradient depends on x, so a detached backward_graph would fail)."""
    R, F = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 3))
    index = np.array(data.draw(st.permutations(range(R)))[:data.draw(st.integers(0, R))], dtype=np.int64)
    idx = minitx.backend.to_device(index, device)
    a = data.draw(arrays((R, F)))
    check_second_derivative(lambda x: (minitx.take_rows(x, idx) * minitx.take_rows(x, idx).tanh()).sum(),
                            leaf(a, device))
    check_second_derivative(lambda h: (minitx.put_rows(h, idx, R) * minitx.put_rows(h, idx, R).tanh()).sum(),
                            leaf(a[:len(index)], device))
