"""The fused scaled_dot_product_attention op: gradients and agreement with the unfused chain."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import minitx
from minitx.testing import arrays, bool_masks


@st.composite
def problems(draw):
    B, T, S = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    H, E = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    packed = draw(st.booleans())
    if packed:
        S = T
    keep = draw(st.none() | bool_masks((B, 1, T, S)))
    drop = draw(st.none() | arrays((B, H, T, S), min_value=0.0, max_value=2.0))
    q = draw(arrays((B, T, 3 * H * E) if packed else (B, T, H * E)))
    kv = None if packed else draw(arrays((B, S, 2 * H * E)))
    return dict(B=B, T=T, S=S, H=H, E=E, keep=keep, drop=drop, q=q, kv=kv)


def reference(q, k, v, H, scale, keep, drop):
    """The unfused chain of minitx ops (each separately gradient-checked)."""
    B, T, I = q.shape
    S, E = k.shape[1], I // H
    split = lambda t, n: t.reshape(B, n, H, E).permute(0, 2, 1, 3)       # (B, H, n, E)
    s = (split(q, T) @ split(k, S).transpose(-1, -2)) * scale              # (B, H, T, S)
    p = minitx.softmax(s, -1) if keep is None else minitx.masked_softmax(s, np.broadcast_to(keep, s.shape))
    if drop is not None:
        p = p * drop
    return (p @ split(v, S)).permute(0, 2, 1, 3).reshape(B, T, I)


def run(pr, device, fused=True):
    q = minitx.tensor(pr["q"], device=device, requires_grad=True)
    ins = [q]
    if pr["kv"] is not None:
        ins.append(minitx.tensor(pr["kv"], device=device, requires_grad=True))
    xp = minitx.backend.array_module(device)
    keep = None if pr["keep"] is None else xp.asarray(pr["keep"])
    drop = None if pr["drop"] is None else xp.asarray(pr["drop"])
    scale = pr["E"] ** -0.5

    def fn(*xs):
        if fused:
            return minitx.scaled_dot_product_attention(*xs, heads=pr["H"], scale=scale, keep=keep, dropout_mask=drop)
        I = pr["H"] * pr["E"]
        if len(xs) == 1:
            q, k, v = xs[0][..., :I], xs[0][..., I:2 * I], xs[0][..., 2 * I:]
        else:
            q, k, v = xs[0], xs[1][..., :I], xs[1][..., I:]
        return reference(q, k, v, pr["H"], scale, keep, drop)
    return fn, ins


@given(problems())
def test_fused_attention_gradients(device, pr):
    fn, ins = run(pr, device)
    minitx.gradcheck(fn, *ins)


@given(problems())
def test_fused_attention_equals_unfused_chain(device, pr):
    fused, ins = run(pr, device)
    chain, ins2 = run(pr, device, fused=False)
    a, b = fused(*ins), chain(*ins2)
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)
    a.sum().backward()
    b.sum().backward()
    for x, y in zip(ins, ins2):
        np.testing.assert_allclose(x.grad.numpy(), y.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_fully_masked_query_gives_zeros_and_zero_gradient(device):
    pr = dict(B=1, T=2, S=2, H=1, E=2, keep=np.array([[[[True, False], [False, False]]]]), drop=None,
              q=np.random.default_rng(0).standard_normal((1, 2, 6)), kv=None)
    fn, ins = run(pr, device)
    out = fn(*ins)
    assert (out.numpy()[0, 1] == 0).all()
    (out * 1e3).sum().backward()
    assert np.isfinite(ins[0].grad.numpy()).all()
    assert (ins[0].grad.numpy()[0, 1, :2] == 0).all()   # the masked query's q gets no gradient


@given(problems().filter(lambda pr: pr["kv"] is not None), st.sampled_from(["q", "kv"]))
def test_cross_attention_with_one_input_needing_gradients(device, pr, which):
    """Backward skips the gradient nobody asked for and still gets the other one right."""
    fn, ins = run(pr, device)
    q, kv = ins
    (kv if which == "q" else q).requires_grad = False
    minitx.gradcheck(fn, q, kv)
    out = fn(q, kv)
    xp = minitx.backend.array_module(device)
    gq, gkv = out.creator.backward(xp.ones(out.shape))   # the op itself returns None for the other
    assert (gq is None) == (which == "kv") and (gkv is None) == (which == "q")


def test_cross_attention_with_no_queries(device):
    """T = 0 queries: empty output, empty q gradient and zero kv gradient."""
    rng = np.random.default_rng(0)
    q = minitx.tensor(np.zeros((2, 0, 4)), device=device, requires_grad=True)
    kv = minitx.tensor(rng.standard_normal((2, 3, 8)), device=device, requires_grad=True)
    out = minitx.scaled_dot_product_attention(q, kv, heads=2, scale=0.5)
    assert out.shape == (2, 0, 4)
    out.sum().backward()
    assert q.grad.shape == (2, 0, 4)
    assert kv.grad.shape == (2, 3, 8) and (kv.grad.numpy() == 0).all()
