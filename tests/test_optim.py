"""Tests for minitx.optim: update equations against NumPy float64 references,
weight decay, schedules, state dicts, clipping, argument checks, convergence."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitx
from minitx import backend
from minitx.optim import (SGD, Adam, AdamW, ConstantLR, NoamLR, WarmupCosine,
                          WarmupInverseSqrt, clip_grad_norm_, clip_grad_value_)
from minitx.optim.schedules import warmup_cosine_factor
from minitx.testing import arrays, shapes


# ----------------------------------------------------------------- helpers
def param(a, device, dtype=np.float64):
    return minitx.tensor(np.asarray(a, dtype=dtype), device=device, requires_grad=True)


def set_grad(p, g):
    p.grad = minitx.tensor(np.asarray(g, dtype=p.dtype), device=p.device)


def run_steps(opt, params, grads_per_step):
    """Apply the given gradients (lists of arrays, one per param) step by step."""
    for grads in grads_per_step:
        for p, g in zip(params, grads):
            set_grad(p, g)
        opt.step()


def ref_adam(p, grads, lr, betas, eps, wd, decoupled):
    """PyTorch's Adam / AdamW in float64 NumPy, written out step by step."""
    b1, b2 = betas
    m = v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        if decoupled:
            p = p - lr * wd * p
        else:
            g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        denom = np.sqrt(v) / np.sqrt(1 - b2 ** t) + eps
        p = p - lr / (1 - b1 ** t) * m / denom
    return p


def ref_sgd(p, grads, lr, momentum, wd, nesterov):
    """PyTorch's SGD in float64 NumPy."""
    buf = None
    for g in grads:
        g = g + wd * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    return p


@st.composite
def problems(draw, n_steps=3):
    """A starting parameter and ``n_steps`` gradients of one random shape."""
    shape = draw(shapes(min_dims=0, max_dims=3))
    p0 = draw(arrays(shape))
    grads = [draw(arrays(shape)) for _ in range(n_steps)]
    return p0, grads


# ------------------------------------------------------ update equations
def test_adam_worked_example(device):
    p0 = np.array([1.0, -2.0, 0.5])
    grads = [np.array([0.5, -1.0, 2.0]), np.array([0.1, 0.2, -0.3]), np.array([-1.0, 0.0, 1.0])]
    p = param(p0, device)
    opt = Adam([p], lr=0.1)
    run_steps(opt, [p], [grads[:1]])
    # Adam's first step moves each weight by lr against the sign of its gradient
    np.testing.assert_allclose(p.numpy(), p0 - 0.1 * np.sign(grads[0]), atol=1e-7)
    run_steps(opt, [p], [[g] for g in grads[1:]])
    expected = ref_adam(p0, grads, 0.1, (0.9, 0.999), 1e-8, 0.0, decoupled=False)
    np.testing.assert_allclose(p.numpy(), expected, rtol=1e-12)
    assert opt.state[id(p)]["step"] == 3


@given(problems(), st.sampled_from([Adam, AdamW]), st.floats(1e-4, 0.5),
       st.tuples(st.floats(0.0, 0.99), st.floats(0.0, 0.999)), st.sampled_from([0.0, 0.1]),
       st.sampled_from([1e-8, 1e-3, 0.1]))
def test_adam_matches_reference(device, problem, cls, lr, betas, wd, eps):
    p0, grads = problem
    p = param(p0, device)
    opt = cls([p], lr=lr, betas=betas, eps=eps, weight_decay=wd)
    run_steps(opt, [p], [[g] for g in grads])
    expected = ref_adam(p0, grads, lr, betas, eps, wd, decoupled=cls is AdamW)
    np.testing.assert_allclose(p.numpy(), expected, rtol=1e-9, atol=1e-12)


@given(st.lists(problems(), min_size=1, max_size=4), st.sampled_from([Adam, AdamW]),
       st.integers(1, 7), st.sampled_from([0.0, 0.1]))
def test_adam_over_several_parameters_in_blocks(device, problems_, cls, block, wd):
    """The flat group's blocks (any size; parameters spanning blocks) update each parameter exactly."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(minitx.backend, "CACHE_BLOCK", block)
        ps = [param(p0, device) for p0, _ in problems_]
        opt = cls(ps, lr=0.1, weight_decay=wd)
        run_steps(opt, ps, [[g[k] for _, g in problems_] for k in range(3)])
    for p, (p0, grads) in zip(ps, problems_):
        expected = ref_adam(p0, grads, 0.1, (0.9, 0.999), 1e-8, wd, decoupled=cls is AdamW)
        np.testing.assert_allclose(p.numpy(), expected, rtol=1e-9, atol=1e-12)


@given(problems(), st.floats(1e-3, 0.5), st.sampled_from([0.0, 0.5, 0.9]),
       st.booleans(), st.sampled_from([0.0, 0.1]))
def test_sgd_matches_reference(device, problem, lr, momentum, nesterov, wd):
    nesterov = nesterov and momentum > 0
    p0, grads = problem
    p = param(p0, device)
    opt = SGD([p], lr=lr, momentum=momentum, weight_decay=wd, nesterov=nesterov)
    kept = []
    for g in grads:
        set_grad(p, g)
        kept.append((p.grad, p.grad.numpy().copy()))
        opt.step()
    np.testing.assert_allclose(p.numpy(), ref_sgd(p0, grads, lr, momentum, wd, nesterov),
                               rtol=1e-10, atol=1e-12)
    for grad, before in kept:   # the optimizer only reads gradients
        np.testing.assert_array_equal(grad.numpy(), before)


def test_adam_l2_vs_adamw_decoupled_weight_decay(device):
    p0 = np.array([2.0, -3.0, 0.5])
    zero = np.zeros(3)
    a, w = param(p0, device), param(p0, device)
    run_steps(Adam([a], lr=0.01, weight_decay=0.1), [a], [[zero]])
    run_steps(AdamW([w], lr=0.01, weight_decay=0.1), [w], [[zero]])
    # Adam: decay enters the gradient (g = wd * p), so Adam normalises it to a step of lr
    np.testing.assert_allclose(a.numpy(), p0 - 0.01 * np.sign(p0), rtol=1e-6)
    # AdamW: p shrinks by lr * wd * p; the zero gradient adds no Adam step
    np.testing.assert_allclose(w.numpy(), p0 * (1 - 0.01 * 0.1), rtol=1e-12)


def test_sgd_momentum_worked_example(device):
    p = param([1.0], device)
    opt = SGD([p], lr=0.1, momentum=0.9, nesterov=True)
    run_steps(opt, [p], [[np.array([1.0])], [np.array([1.0])]])
    # buf1 = 1, step 1.9 * 0.1; buf2 = 1.9, step (1 + 0.9 * 1.9) * 0.1 = 0.271
    np.testing.assert_allclose(p.numpy(), [1.0 - 0.19 - 0.271], rtol=1e-12)


# ------------------------------------------------- bookkeeping and groups
def test_zero_grad_skip_and_version(device):
    p, q = param([1.0, 2.0], device), param([3.0], device)
    opt = SGD([p, q], lr=0.5)
    set_grad(p, [1.0, 1.0])
    version = p._version
    opt.step()
    assert p._version > version
    np.testing.assert_array_equal(p.numpy(), [0.5, 1.5])
    np.testing.assert_array_equal(q.numpy(), [3.0])      # no grad: untouched
    opt.zero_grad()
    assert p.grad is None and q.grad is None


def test_param_groups_have_their_own_lr(device):
    p, q = param([1.0], device), param([1.0], device)
    opt = SGD([{"params": [p]}, {"params": [q], "lr": 0.5}], lr=0.1)
    run_steps(opt, [p, q], [[np.array([1.0]), np.array([1.0])]])
    np.testing.assert_allclose(p.numpy(), [0.9])
    np.testing.assert_allclose(q.numpy(), [0.5])


def test_state_lives_on_param_device_with_param_dtype(device):
    p = param(np.ones((2, 3)), device, dtype=np.float32)
    opt = AdamW([p])
    run_steps(opt, [p], [[np.ones((2, 3))]] * 2)
    state = opt.state[id(p)]
    for name in ("exp_avg", "exp_avg_sq"):
        assert backend.device_of(state[name]) == device
        assert state[name].dtype == np.float32
    assert p.dtype == np.float32 and p.device == device


# -------------------------------------------------------------- state dicts
def _setup(device, make_opt, w0=None, b0=None):
    """Two params in two groups, an optimizer, a schedule and a training closure."""
    target = minitx.tensor(np.linspace(-1, 1, 6).reshape(2, 3), device=device)
    w = param(np.arange(6.0).reshape(2, 3) if w0 is None else w0, device)
    b = param([0.3] if b0 is None else b0, device)
    opt = make_opt([{"params": [w]}, {"params": [b], "lr": 0.05}])
    sched = WarmupCosine(opt, warmup_steps=3, total_steps=12)

    def train(n_steps):
        for _ in range(n_steps):
            opt.zero_grad()
            (((w - target) ** 2).sum() + (b * b).sum()).backward()
            opt.step()
            sched.step()
    return w, b, opt, sched, train


@pytest.mark.parametrize("make_opt", [
    lambda g: SGD(g, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda g: Adam(g, lr=0.1, weight_decay=0.01),
    lambda g: AdamW(g, lr=0.1),
], ids=["sgd", "adam", "adamw"])
def test_state_dict_round_trip_continues_bit_identically(device, make_opt):
    w10, b10, _, _, train10 = _setup(device, make_opt)
    train10(10)
    w5, b5, opt5, sched5, train5 = _setup(device, make_opt)
    train5(5)
    sd, ssd = opt5.state_dict(), sched5.state_dict()
    for entry in sd["state"].values():
        assert all(isinstance(v, (int, np.ndarray)) for v in entry.values())
    snapshot = {i: {k: np.copy(v) for k, v in e.items()} for i, e in sd["state"].items()}

    w, b, opt, sched, train = _setup(device, make_opt, w5.numpy().copy(), b5.numpy().copy())
    opt.load_state_dict(sd)
    sched.load_state_dict(ssd)
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in opt5.param_groups]
    train(5)
    np.testing.assert_array_equal(w.numpy(), w10.numpy())
    np.testing.assert_array_equal(b.numpy(), b10.numpy())

    train5(5)   # the saved dict is a snapshot: neither run wrote into it
    for i, entry in snapshot.items():
        for k, v in entry.items():
            np.testing.assert_array_equal(sd["state"][i][k], v)


def test_load_state_dict_mismatch_raises(device):
    p, q = param(np.ones(3), device), param(np.ones((2, 2)), device)
    opt = Adam([p, q])
    run_steps(opt, [p, q], [[np.ones(3), np.ones((2, 2))]])
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="params"):
        Adam([p]).load_state_dict(sd)
    with pytest.raises(ValueError, match="param 1"):
        Adam([param(np.ones(3), device), param(np.ones(4), device)]).load_state_dict(sd)


# --------------------------------------------------------------- schedules
def _lr_after(sched, n):
    for _ in range(n - sched.last_step):
        sched.step()
    assert sched.get_last_lr()[0] == sched.optimizer.param_groups[0]["lr"]
    return sched.optimizer.param_groups[0]["lr"]


def test_warmup_cosine_values(device):
    opt = SGD([param([0.0], device)], lr=2.0)
    sched = WarmupCosine(opt, warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
    expected = {0: 0.0, 5: 1.0, 10: 2.0, 60: 2.0 * 0.55, 110: 0.2, 150: 0.2}
    for step, lr in expected.items():
        assert _lr_after(sched, step) == pytest.approx(lr, abs=1e-12)
    assert warmup_cosine_factor(35, 10, 110) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_warmup_inverse_sqrt_and_constant_values(device):
    sched = WarmupInverseSqrt(SGD([param([0.0], device)], lr=1.0), warmup_steps=4)
    assert [_lr_after(sched, s) for s in (0, 2, 4, 16)] == pytest.approx([0.0, 0.5, 1.0, 0.5])
    sched = ConstantLR(SGD([param([0.0], device)], lr=3.0), warmup_steps=2)
    assert [_lr_after(sched, s) for s in (0, 1, 2, 100)] == pytest.approx([0.0, 1.5, 3.0, 3.0])


def test_noam_values(device):
    opt = Adam([param([0.0], device)], lr=123.0)         # overwritten by Noam's absolute lr
    sched = NoamLR(opt, d_model=512, warmup_steps=4000)
    assert sched.last_step == 1
    assert _lr_after(sched, 1) == pytest.approx(512 ** -0.5 * 4000 ** -1.5)
    assert sched.lr_at(4000)[0] == pytest.approx(6.98771e-4, rel=1e-5)      # the peak
    assert sched.lr_at(16000)[0] == pytest.approx(6.98771e-4 / 2, rel=1e-5)


def test_scheduler_scales_each_group_and_restores(device):
    opt = SGD([{"params": [param([0.0], device)]},
               {"params": [param([0.0], device)], "lr": 0.5}], lr=1.0)
    sched = WarmupInverseSqrt(opt, warmup_steps=4)
    _lr_after(sched, 2)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.25]
    sd = sched.state_dict()
    again = WarmupInverseSqrt(opt, warmup_steps=4)       # bases come from initial_lr
    assert again.get_last_lr() == [0.0, 0.0]
    again.load_state_dict(sd)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.25]


# ---------------------------------------------------------------- clipping
def test_clip_grad_norm_worked_example(device):
    p, q = param(np.zeros(2), device), param(np.zeros(1), device)
    set_grad(p, [3.0, 4.0])
    set_grad(q, [12.0])
    old = p.grad.data
    total = clip_grad_norm_([p, q], max_norm=1.0)
    assert isinstance(total, minitx.Tensor) and total.device == device
    assert total.item() == pytest.approx(13.0)
    np.testing.assert_allclose(p.grad.numpy(), [3 / 13, 4 / 13], rtol=1e-6)
    np.testing.assert_array_equal(backend.to_numpy(old), [3.0, 4.0])   # not written in place
    assert clip_grad_norm_([p, q], max_norm=5.0).item() == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(p.grad.numpy(), [3 / 13, 4 / 13], rtol=1e-5)  # under: unchanged


@given(st.lists(arrays(shapes(min_dims=1, max_dims=2), min_value=-10, max_value=10),
                min_size=1, max_size=3),
       st.floats(0.01, 20.0), st.sampled_from([2.0, 1.0, float("inf")]))
def test_clip_grad_norm_property(device, grads, max_norm, norm_type):
    params = [param(np.zeros_like(g), device) for g in grads]
    for p, g in zip(params, grads):
        set_grad(p, g)
    flat = np.concatenate([g.ravel() for g in grads])
    total = clip_grad_norm_(params, max_norm, norm_type)
    assert total.item() == pytest.approx(np.linalg.norm(flat, norm_type), rel=1e-9)
    after = np.concatenate([p.grad.numpy().ravel() for p in params])
    assert np.linalg.norm(after, norm_type) <= max_norm * (1 + 1e-9)
    coef = min(1.0, max_norm / (np.linalg.norm(flat, norm_type) + 1e-6))
    np.testing.assert_allclose(after, flat * coef, rtol=1e-9, atol=1e-300)   # one common scale


def test_clip_grad_value(device):
    p = param(np.zeros(3), device)
    set_grad(p, [-5.0, 0.5, 7.0])
    clip_grad_value_(p, 1.0)
    np.testing.assert_array_equal(p.grad.numpy(), [-1.0, 0.5, 1.0])


# ------------------------------------------------------------ bad arguments
@pytest.mark.parametrize("make, name", [
    (lambda ps: SGD(ps, lr=-0.1), "lr"),
    (lambda ps: SGD(ps, lr=0.1, momentum=-0.5), "momentum"),
    (lambda ps: SGD(ps, lr=0.1, weight_decay=-1.0), "weight_decay"),
    (lambda ps: SGD(ps, lr=0.1, nesterov=True), "nesterov"),
    (lambda ps: Adam(ps, lr=-1.0), "lr"),
    (lambda ps: Adam(ps, betas=(1.0, 0.999)), "betas"),
    (lambda ps: Adam(ps, betas=(0.9, -0.1)), "betas"),
    (lambda ps: Adam(ps, eps=0.0), "eps"),
    (lambda ps: AdamW(ps, weight_decay=-0.1), "weight_decay"),
    (lambda ps: AdamW([{"params": ps, "lr": -1.0}]), "lr"),
    (lambda ps: WarmupCosine(SGD(ps, lr=1.0), warmup_steps=10, total_steps=10), "total_steps"),
    (lambda ps: WarmupCosine(SGD(ps, lr=1.0), 1, 10, min_lr_ratio=2.0), "min_lr_ratio"),
    (lambda ps: WarmupInverseSqrt(SGD(ps, lr=1.0), warmup_steps=0), "warmup_steps"),
    (lambda ps: NoamLR(SGD(ps, lr=1.0), d_model=0, warmup_steps=10), "d_model"),
    (lambda ps: clip_grad_norm_(ps, max_norm=-1.0), "max_norm"),
])
def test_bad_values_raise_value_error_naming_argument(device, make, name):
    with pytest.raises(ValueError, match=name):
        make([param([1.0], device)])


@pytest.mark.parametrize("make", [
    lambda ps: SGD(ps, lr=0.1, momentun=0.9),
    lambda ps: Adam(ps, beta1=0.9),
    lambda ps: AdamW(ps, decay=0.1),
    lambda ps: Adam([{"params": ps, "momentum": 0.9}]),
])
def test_unknown_keywords_raise_type_error(device, make):
    with pytest.raises(TypeError):
        make([param([1.0], device)])


def test_empty_params_raise(device):
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)


# -------------------------------------------------------------- convergence
@pytest.mark.parametrize("make_opt", [
    lambda ps: SGD(ps, lr=0.1),
    lambda ps: SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
    lambda ps: Adam(ps, lr=0.1),
    lambda ps: AdamW(ps, lr=0.1, weight_decay=0.0),
], ids=["sgd", "nesterov", "adam", "adamw"])
def test_minimises_a_quadratic(device, make_opt):
    rng = np.random.default_rng(0)
    target = minitx.tensor(rng.normal(size=(4, 5)).astype(np.float32), device=device)
    p = minitx.tensor(rng.normal(size=(4, 5)).astype(np.float32), requires_grad=True,
                      device=device)
    opt = make_opt([p])
    first = None
    for _ in range(200):
        opt.zero_grad()
        loss = ((p - target) ** 2).sum()
        first = loss.item() if first is None else first
        loss.backward()
        opt.step()
    final = ((p - target) ** 2).sum().item()
    assert final < 1e-3 * first
    assert p.dtype == np.float32


def test_gradient_of_wrong_shape_raises(device):
    p = param(np.zeros(3), device)
    set_grad(p, [1.0, 2.0])
    with pytest.raises(ValueError, match="shape"):
        Adam([p]).step()


def test_loading_another_optimizers_state_raises(device):
    p = param(np.ones(2), device)
    sgd = SGD([p], lr=0.1, momentum=0.9)
    run_steps(sgd, [p], [[np.ones(2)]])
    with pytest.raises(ValueError, match="param group 0"):
        Adam([p]).load_state_dict(sgd.state_dict())


def test_adam_step_counts_survive_steps_with_missing_gradients():
    """Steps where only some params have a gradient (per-parameter path) and full steps (flat
    path) mix; every param keeps PyTorch's own step count and bias correction."""
    pattern = [(1, 1), (1, 0), (0, 1), (1, 1), (1, 1)]
    grads = np.random.default_rng(3).standard_normal((5, 2, 3))
    a, b = param(np.ones(3), "cpu"), param(np.ones(3), "cpu")
    opt = Adam([a, b], lr=0.1)
    alone = [(param(np.ones(3), "cpu"), None), (param(np.ones(3), "cpu"), None)]
    alone = [(p, Adam([p], lr=0.1)) for p, _ in alone]      # each param with an optimizer of its own
    for k, present in enumerate(pattern):
        for i, (p, here) in enumerate(zip((a, b), present)):
            p.grad = minitx.tensor(grads[k, i]) if here else None
            if here:
                set_grad(alone[i][0], grads[k, i])
                alone[i][1].step()
        opt.step()
    for p, (q, _) in zip((a, b), alone):
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-12)
    assert opt.state[id(a)]["step"] == 4 and opt.state[id(b)]["step"] == 4


def test_optimizers_refuse_an_unannounced_cuda_graph_capture(monkeypatch):
    p = param(np.ones(2), "cpu")
    set_grad(p, np.ones(2))
    monkeypatch.setattr(backend, "stream_is_capturing", lambda: True)
    with pytest.raises(minitx.GraphError, match="use Adam or AdamW with CapturedStep"):
        SGD([p], lr=0.1).step()
    with pytest.raises(minitx.GraphError, match="was not given to CapturedStep"):
        Adam([p], lr=0.1).step()


def test_replaying_after_the_state_was_replaced_is_refused():
    p = param(np.ones(2), "cpu")
    opt = Adam([p], lr=0.1)
    set_grad(p, np.ones(2))
    opt.step()
    opt.before_replay()                                  # fine: nothing replaced
    opt.load_state_dict(opt.state_dict())                # new state arrays: not the graph's
    with pytest.raises(minitx.GraphError, match="make a new CapturedStep"):
        opt.before_replay()


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_grad_norm_is_the_norm_of_all_gradients_together(device, norm_type):
    g1, g2 = np.array([3.0, -4.0]), np.array([[1.0, -2.0], [0.5, 7.0]])
    a, b, c = param(np.ones(2), device), param(np.ones((2, 2)), device), param(np.ones(3), device)
    set_grad(a, g1)
    set_grad(b, g2)                                      # c has no gradient: skipped
    want = np.linalg.norm(np.concatenate([g1, g2.ravel()]), norm_type)
    got = minitx.optim.grad_norm(iter([a, b, c]), norm_type)
    assert got.item() == pytest.approx(want)
    assert clip_grad_norm_([a, b, c], 1e9, norm_type).item() == pytest.approx(want)
