"""Tensor hooks, retain_grad, grad() and Module forward pre-hooks (minitx/autograd/hooks.py)."""
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import minitx
from minitx import nn
from minitx.autograd import hooks
from minitx.autograd.higher_order import grad
from minitx.testing import arrays, shapes


def test_hooks_fire_in_backward_order(T):
    x, w = T([1.0, 2.0], grad=True), T([3.0, -1.0], grad=True)
    calls = []
    for name, t in (("x", x), ("w", w)):
        t.register_hook(lambda g, n=name: calls.append(n))
    y = x * w                                    # made first, so its gradient comes late
    y.register_hook(lambda g: calls.append("y"))
    z = y.exp()
    z.register_hook(lambda g: calls.append("z"))
    loss = (z * w).sum()                         # w used twice: its hook waits for both uses
    loss.register_hook(lambda g: calls.append("loss"))
    loss.backward()
    assert calls == ["loss", "z", "y", "x", "w"]  # w's gradient is complete only after y's node ran


def test_leaf_hook_sees_the_total_gradient_once(T):
    a = np.array([1.0, -2.0, 0.5])
    x = T(a, grad=True)
    seen = []
    x.register_hook(lambda g: seen.append(g.numpy().copy()))
    (x * x + 3 * x).sum().backward()             # three uses of x
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], 2 * a + 3)
    np.testing.assert_allclose(x.grad.numpy(), 2 * a + 3)


def test_a_hook_can_replace_the_gradient(T):
    x = T([1.0, 2.0], grad=True)
    y = x * 3.0
    y.register_hook(lambda g: g * 10.0)          # non-leaf: changes what flows on to x
    x.register_hook(lambda g: g + 1.0)           # leaf: changes what lands in x.grad
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [31.0, 31.0])


@given(arrays(shapes(max_dims=2)), st.floats(-3, 3))
@example(np.array([0.5, -1.0]), 1.0)                 # k = 1: the hook changes nothing
def test_hooks_scale_gradients_linearly(device, a, k):
    x = minitx.tensor(a, device=device, requires_grad=True)
    (x.tanh() * x).sum().backward()
    plain = x.grad.numpy()
    x.grad = None
    y = x.tanh()
    y.register_hook(lambda g: g * k)             # scales only the path through y
    (y * x).sum().backward()
    expected = k * x.numpy() * (1 - np.tanh(a) ** 2) + np.tanh(a)
    np.testing.assert_allclose(x.grad.numpy(), expected, atol=1e-12)
    if k == 1:
        np.testing.assert_allclose(x.grad.numpy(), plain)


def test_remove_unregisters_and_leaves_no_trace(T):
    x = T([1.0, 2.0], grad=True)
    calls = []
    h = x.register_hook(lambda g: calls.append(1))
    assert len(hooks.hooked_leaves) == 1         # the engine scans for leaf hooks only now
    h.remove()
    h.remove()                                   # a second remove is harmless
    assert len(hooks.hooked_leaves) == 0
    (x * 2).sum().backward()
    assert calls == []
    y = x * 2
    hy = y.register_hook(lambda g: calls.append(2))
    hy.remove()
    y.sum().backward()
    assert calls == []


def test_retain_grad_fills_a_non_leaf_grad(T):
    a = np.array([[1.0, -2.0], [0.5, 3.0]])
    x = T(a, grad=True)
    y = x * x
    z = y.sum(axis=0)
    y.retain_grad()
    z.retain_grad()
    untouched = y * 1.0
    (z * T([2.0, 5.0])).sum().backward(retain_graph=True)
    np.testing.assert_allclose(z.grad.numpy(), [2.0, 5.0])
    np.testing.assert_allclose(y.grad.numpy(), [[2.0, 5.0], [2.0, 5.0]])
    assert untouched.grad is None and (x * 2).grad is None        # only when asked for
    np.testing.assert_allclose(x.grad.numpy(), 2 * a * np.array([2.0, 5.0]))
    (z * T([2.0, 5.0])).sum().backward()                           # accumulates like a leaf
    np.testing.assert_allclose(y.grad.numpy(), [[4.0, 10.0], [4.0, 10.0]])


def test_retain_grad_on_a_leaf_is_harmless(T):
    x = T([1.0, 2.0], grad=True)
    x.retain_grad()
    (x * 2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])


def test_hook_errors(T):
    c = T([1.0, 2.0])
    with pytest.raises(minitx.GraphError, match="does not require grad"):
        c.register_hook(lambda g: g)
    with pytest.raises(TypeError, match="callable"):
        T([1.0], grad=True).register_hook(3)
    x = T([1.0, 2.0], grad=True)
    y = x * 2
    y.register_hook(lambda g: g.sum())           # wrong shape
    with pytest.raises(minitx.GraphError, match="shape"):
        y.sum().backward()
    y2 = x * 2
    y2.sum().backward()
    with pytest.raises(minitx.GraphError, match="freed"):
        y2.retain_grad()


def test_hook_on_a_leaf_root(T):
    x = T([1.0, 2.0], grad=True)
    x.register_hook(lambda g: g * 3)
    x.backward(T([1.0, 1.0]))
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0])


def test_grad_returns_gradients_and_leaves_dot_grad_alone(T):
    x, w = T([1.0, 2.0], grad=True), T([3.0, 4.0], grad=True)
    w.grad = T([7.0, 7.0])
    y = x * w
    gx, gy, gnone = grad((y * y).sum(), [x, y, T([0.0], grad=True)])
    np.testing.assert_allclose(gx.numpy(), 2 * np.array([3.0, 8.0]) * [3.0, 4.0])
    np.testing.assert_allclose(gy.numpy(), [6.0, 16.0])
    assert gnone is None and x.grad is None
    np.testing.assert_allclose(w.grad.numpy(), [7.0, 7.0])           # restored


def test_module_forward_pre_hook(device):
    lin = nn.Linear(3, 2).to(device)
    calls = []

    def pre(module, args):
        calls.append(("pre", module is lin, args[0].shape))
        return args[0] * 0.0                     # replace the input

    h = lin.register_forward_pre_hook(pre)
    lin.register_forward_hook(lambda m, args, out: calls.append(("post", float(args[0].numpy().sum()))))
    x = minitx.tensor(np.ones((4, 3)), device=device, dtype=np.float32)
    out = lin(x)
    assert calls == [("pre", True, (4, 3)), ("post", 0.0)]        # pre first; post sees replaced args
    np.testing.assert_allclose(out.numpy(), np.broadcast_to(lin.bias.numpy(), (4, 2)), rtol=1e-6)
    h.remove()
    calls.clear()
    out = lin(x)
    assert calls == [("post", 12.0)]
    assert not np.allclose(out.numpy(), np.broadcast_to(lin.bias.numpy(), (4, 2)))
