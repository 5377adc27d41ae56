"""Tests for minitx.nn.attention: forward against a NumPy reference, gradient
checks (float64) w.r.t. inputs and every parameter, masking properties,
fully masked queries, the KV cache, the causal mask and mask checks."""
import re

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minitx
from minitx import backend, gradcheck
from minitx.nn import Attention, KVCache, causal_mask
from minitx.testing import arrays, bool_masks, padding_masks


# ------------------------------------------------------------------ helpers
@st.composite
def setups(draw, cross=False):
    """Sizes of one attention call: B, T, S, H, E, D (D != H*E) and Dc."""
    B, T = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    S = draw(st.integers(1, 4)) if cross else T
    H, E = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    D = draw(st.integers(1, 5).filter(lambda d: d != H * E))
    Dc = draw(st.integers(1, 5)) if cross else None
    return dict(B=B, T=T, S=S, heads=H, dim_head=E, dim=D, dim_context=Dc)


def key_masks(B, S):
    """(B, S) key masks: prefix padding or any pattern (rows of all False included)."""
    return st.one_of(padding_masks(B, S), bool_masks((B, S)))


def build(device, s, causal=False, bias=False, dropout=0.0):
    attn = Attention(s["dim"], heads=s["heads"], dim_head=s["dim_head"], causal=causal,
                     dropout=dropout, dim_context=s["dim_context"], bias=bias)
    return attn.double().to(device)


def leaf(a, device):
    return minitx.tensor(np.asarray(a, dtype=np.float64), device=device, requires_grad=True)


def on(device, mask):
    """A NumPy mask moved to the device under test (None stays None)."""
    return None if mask is None else backend.to_device(mask, device)


def draw_inputs(data, s, cross=False):
    x = data.draw(arrays((s["B"], s["T"], s["dim"])))
    c = data.draw(arrays((s["B"], s["S"], s["dim_context"]))) if cross else None
    return x, c


def reference(attn, x, context=None, keep=None):
    """Multi-head attention in float64 NumPy; keep (B, T, S) bool, True = attend."""
    def lin(layer, a):
        out = a @ layer.weight.numpy().T
        return out if layer.bias is None else out + layer.bias.numpy()

    H, E = attn.heads, attn.dim_head
    c = x if context is None else context
    B, T, S = x.shape[0], x.shape[1], c.shape[1]
    q = lin(attn.to_q, x).reshape(B, T, H, E).transpose(0, 2, 1, 3)       # (B, H, T, E)
    k = lin(attn.to_k, c).reshape(B, S, H, E).transpose(0, 2, 1, 3)       # (B, H, S, E)
    v = lin(attn.to_v, c).reshape(B, S, H, E).transpose(0, 2, 1, 3)
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(E)                    # (B, H, T, S)
    if keep is None:
        keep = np.ones((B, T, S), dtype=bool)
    keep = np.broadcast_to(keep[:, None], scores.shape)
    scores = np.where(keep, scores, -np.inf)
    top = scores.max(-1, keepdims=True)
    e = np.where(keep, np.exp(scores - np.where(np.isfinite(top), top, 0.0)), 0.0)
    total = e.sum(-1, keepdims=True)
    probs = np.divide(e, total, out=np.zeros_like(e), where=total > 0)    # all masked -> 0
    out = (probs @ v).transpose(0, 2, 1, 3).reshape(B, T, H * E)
    return lin(attn.to_out, out)


def reference_keep(B, T, S, causal=False, key_mask=None, attn_mask=None):
    keep = np.ones((B, T, S), dtype=bool)
    if causal:
        keep &= np.array([[j <= i + S - T for j in range(S)] for i in range(T)], dtype=bool)
    if key_mask is not None:
        keep &= key_mask[:, None, :]
    if attn_mask is not None:
        keep &= attn_mask
    return keep


# --------------------------------------------------------- forward values
@given(setups(), st.booleans(), st.booleans(), st.data())
def test_self_attention_matches_reference(device, s, causal, bias, data):
    attn = build(device, s, causal=causal, bias=bias)
    x, _ = draw_inputs(data, s)
    mask = data.draw(st.none() | key_masks(s["B"], s["T"]))
    full = data.draw(st.none() | bool_masks((s["B"], s["T"], s["T"])))
    out = attn(leaf(x, device), mask=on(device, mask), attn_mask=on(device, full))
    assert out.shape == (s["B"], s["T"], s["dim"])
    keep = reference_keep(s["B"], s["T"], s["T"], causal, mask, full)
    np.testing.assert_allclose(out.numpy(), reference(attn, x, keep=keep), rtol=1e-10, atol=1e-12)


@given(setups(cross=True), st.booleans(), st.data())
def test_cross_attention_matches_reference(device, s, bias, data):
    attn = build(device, s, bias=bias)
    x, c = draw_inputs(data, s, cross=True)
    cmask = data.draw(st.none() | key_masks(s["B"], s["S"]))
    out = attn(leaf(x, device), context=leaf(c, device), context_mask=on(device, cmask))
    assert out.shape == (s["B"], s["T"], s["dim"])
    keep = reference_keep(s["B"], s["T"], s["S"], key_mask=cmask)
    np.testing.assert_allclose(out.numpy(), reference(attn, x, c, keep=keep), rtol=1e-10, atol=1e-12)


def test_mask_may_be_a_tensor(device):
    s = dict(B=2, T=3, S=3, heads=2, dim_head=2, dim=3, dim_context=None)
    attn = build(device, s)
    x = leaf(np.random.default_rng(0).standard_normal((2, 3, 3)), device)
    mask = np.array([[True, True, False], [True, False, False]])
    a = attn(x, mask=on(device, mask))
    b = attn(x, mask=minitx.tensor(mask, device=device))
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_attention_dropout_only_in_training(device):
    s = dict(B=2, T=4, S=4, heads=2, dim_head=3, dim=5, dim_context=None)
    attn = build(device, s, dropout=0.5)
    x = np.random.default_rng(1).standard_normal((2, 4, 5))
    attn.eval()
    np.testing.assert_allclose(attn(leaf(x, device)).numpy(), reference(attn, x), rtol=1e-10)
    attn.train()
    assert not np.allclose(attn(leaf(x, device)).numpy(), attn(leaf(x, device)).numpy())


# ----------------------------------------------------------- gradient checks
@given(setups(), st.booleans(), st.booleans(), st.data())
def test_self_attention_gradcheck(device, s, causal, bias, data):
    attn = build(device, s, causal=causal, bias=bias)
    x, _ = draw_inputs(data, s)
    mask = on(device, data.draw(st.none() | key_masks(s["B"], s["T"])))
    full = on(device, data.draw(st.none() | bool_masks((s["B"], s["T"], s["T"]))))
    params = attn.parameters()
    assert len(params) == (8 if bias else 4)
    gradcheck(lambda x, *ps: attn(x, mask=mask, attn_mask=full), leaf(x, device), *params)


@given(setups(cross=True), st.booleans(), st.data())
def test_cross_attention_gradcheck(device, s, bias, data):
    attn = build(device, s, bias=bias)
    x, c = draw_inputs(data, s, cross=True)
    cmask = on(device, data.draw(st.none() | key_masks(s["B"], s["S"])))
    gradcheck(lambda x, c, *ps: attn(x, context=c, context_mask=cmask),
              leaf(x, device), leaf(c, device), *attn.parameters())


# ------------------------------------------------------- masking properties
@given(setups(), st.booleans(), st.data())
def test_masked_keys_do_not_affect_real_queries_self(device, s, causal, data):
    attn = build(device, s, causal=causal)
    x, _ = draw_inputs(data, s)
    mask = data.draw(key_masks(s["B"], s["T"]))
    other = data.draw(arrays(x.shape))
    x2 = np.where(mask[..., None], x, other)                 # new values at masked positions only
    a = attn(leaf(x, device), mask=on(device, mask)).numpy()
    b = attn(leaf(x2, device), mask=on(device, mask)).numpy()
    np.testing.assert_allclose(b[mask], a[mask], rtol=1e-12, atol=1e-12)


@given(setups(cross=True), st.data())
def test_masked_context_does_not_affect_output_cross(device, s, data):
    attn = build(device, s)
    x, c = draw_inputs(data, s, cross=True)
    cmask = data.draw(key_masks(s["B"], s["S"]))
    c2 = np.where(cmask[..., None], c, data.draw(arrays(c.shape)))
    a = attn(leaf(x, device), context=leaf(c, device), context_mask=on(device, cmask)).numpy()
    b = attn(leaf(x, device), context=leaf(c2, device), context_mask=on(device, cmask)).numpy()
    np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)


@given(setups(), st.data())
def test_causal_future_tokens_do_not_affect_the_past(device, s, data):
    assume(s["T"] >= 2)                                        # a past to protect
    attn = build(device, s, causal=True)
    x, _ = draw_inputs(data, s)
    t = data.draw(st.integers(1, s["T"] - 1))
    x2 = x.copy()
    x2[:, t:] = data.draw(arrays(x[:, t:].shape))             # change token t and all after it
    a = attn(leaf(x, device)).numpy()
    b = attn(leaf(x2, device)).numpy()
    np.testing.assert_allclose(b[:, :t], a[:, :t], rtol=1e-12, atol=1e-12)


def test_without_causal_the_future_is_visible(device):
    s = dict(B=1, T=3, S=3, heads=1, dim_head=2, dim=3, dim_context=None)
    x = np.random.default_rng(2).standard_normal((1, 3, 3))
    x2 = x.copy()
    x2[:, 2] += 1.0
    for causal, changes in ((False, True), (True, False)):
        attn = build(device, s, causal=causal)
        a, b = attn(leaf(x, device)).numpy(), attn(leaf(x2, device)).numpy()
        assert (not np.allclose(a[:, 0], b[:, 0])) == changes


def assert_all_grads_zero_and_finite(*tensors):
    for t in tensors:
        g = t.grad.numpy()
        assert np.isfinite(g).all()
        np.testing.assert_array_equal(g, np.zeros_like(g))


@given(setups(), st.booleans(), st.data())
def test_fully_masked_query_outputs_zeros_and_zero_grad_self(device, s, causal, data):
    attn = build(device, s, causal=causal)
    x, _ = draw_inputs(data, s)
    full = data.draw(bool_masks((s["B"], s["T"], s["T"])))
    b0, t0 = data.draw(st.integers(0, s["B"] - 1)), data.draw(st.integers(0, s["T"] - 1))
    full[b0, t0] = False                                     # query (b0, t0) sees no key
    xt = leaf(x, device)
    out = attn(xt, attn_mask=on(device, full))
    row = out.numpy()[b0, t0]
    assert np.isfinite(out.numpy()).all()
    np.testing.assert_array_equal(row, np.zeros_like(row))
    out[b0, t0].sum().backward()                             # that row depends on nothing
    assert_all_grads_zero_and_finite(xt, *attn.parameters())
    attn.zero_grad()
    xt.grad = None
    attn(xt, attn_mask=on(device, full)).sum().backward()    # the whole output: finite grads
    assert all(np.isfinite(p.grad.numpy()).all() for p in [xt, *attn.parameters()])


@given(setups(cross=True), st.data())
def test_fully_masked_context_outputs_zeros_and_zero_grad_cross(device, s, data):
    attn = build(device, s)
    x, c = draw_inputs(data, s, cross=True)
    cmask = data.draw(key_masks(s["B"], s["S"]))
    b0 = data.draw(st.integers(0, s["B"] - 1))
    cmask[b0] = False                                        # batch element b0 has no context
    xt, ct = leaf(x, device), leaf(c, device)
    out = attn(xt, context=ct, context_mask=on(device, cmask))
    np.testing.assert_array_equal(out.numpy()[b0], np.zeros((s["T"], s["dim"])))
    out[b0].sum().backward()
    assert_all_grads_zero_and_finite(xt, ct, *attn.parameters())


@given(setups(), st.booleans(), st.sampled_from([1e3, 1e6]), st.data())
def test_large_inputs_stay_finite(device, s, causal, scale, data):
    attn = build(device, s, causal=causal)
    x, _ = draw_inputs(data, s)
    mask = on(device, data.draw(key_masks(s["B"], s["T"])))
    full = on(device, data.draw(st.none() | bool_masks((s["B"], s["T"], s["T"]))))
    xt = leaf(x * scale, device)
    out = attn(xt, mask=mask, attn_mask=full)
    assert np.isfinite(out.numpy()).all()
    out.sum().backward()
    assert all(np.isfinite(p.grad.numpy()).all() for p in [xt, *attn.parameters()])


def test_large_float32_inputs_stay_finite(device):
    attn = Attention(4, heads=2, dim_head=3, causal=True).to(device)
    x = minitx.tensor(np.random.default_rng(3).standard_normal((2, 4, 4)) * 1e3, dtype=np.float32,
                      device=device)
    mask = on(device, np.array([[True, True, False, False], [False, True, True, True]]))
    out = attn(x, mask=mask)
    assert out.dtype == np.float32 and np.isfinite(out.numpy()).all()
    np.testing.assert_array_equal(out.numpy()[1, 0], np.zeros(4))   # query 0 sees only key 0: masked


# ----------------------------------------------------------------- KV cache
@given(setups(), st.booleans(), st.data())
def test_kv_cache_step_by_step_equals_full_causal(device, s, bias, data):
    attn = build(device, s, causal=True, bias=bias)
    x, _ = draw_inputs(data, s)
    full = attn(leaf(x, device)).numpy()
    cache = KVCache()
    assert cache.length == 0
    first = data.draw(st.integers(1, s["T"]))                # a prompt chunk, then single steps
    steps = [attn(leaf(x[:, :first], device), cache=cache).numpy()]
    for t in range(first, s["T"]):
        steps.append(attn(leaf(x[:, t:t + 1], device), cache=cache).numpy())
        assert cache.length == t + 1
    assert cache.length == s["T"]
    assert cache.kv.shape == (s["B"], s["T"], 2 * s["heads"] * s["dim_head"])   # keys | values
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=1e-10, atol=1e-12)


@given(setups(), st.data())
def test_kv_cache_with_key_padding_mask(device, s, data):
    attn = build(device, s, causal=True)
    x, _ = draw_inputs(data, s)
    mask = data.draw(key_masks(s["B"], s["T"]))
    full = attn(leaf(x, device), mask=on(device, mask)).numpy()
    cache = KVCache()
    steps = [attn(leaf(x[:, t:t + 1], device), mask=on(device, mask[:, :t + 1]), cache=cache).numpy()
             for t in range(s["T"])]
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=1e-10, atol=1e-12)


@given(setups(cross=True), st.data())
def test_kv_cache_cross_attention_reuses_keys(device, s, data):
    attn = build(device, s)
    x, c = draw_inputs(data, s, cross=True)
    cmask = on(device, data.draw(st.none() | key_masks(s["B"], s["S"])))
    ct = leaf(c, device)
    full = attn(leaf(x, device), context=ct, context_mask=cmask).numpy()
    cache = KVCache()
    projected = []
    project = attn._project
    attn._project = lambda inp, layers: projected.append(inp is ct) or project(inp, layers)
    steps = []
    for t in range(s["T"]):
        steps.append(attn(leaf(x[:, t:t + 1], device), context=ct, context_mask=cmask,
                          cache=cache).numpy())
        if t == 0:
            kv = cache.kv
        assert cache.kv is kv                               # computed once, then reused
        assert cache.length == s["S"]
    assert projected.count(True) == 1                       # the context was projected once
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=1e-10, atol=1e-12)


# -------------------------------------------------------------- causal mask
def test_causal_mask_is_bottom_right_aligned():
    np.testing.assert_array_equal(causal_mask(np, 2, 4), [[1, 1, 1, 0], [1, 1, 1, 1]])
    np.testing.assert_array_equal(causal_mask(np, 3, 3), np.tril(np.ones((3, 3), dtype=bool)))
    assert causal_mask(np, 2, 4).dtype == np.bool_


@given(st.integers(1, 6), st.integers(0, 6))
def test_causal_mask_last_query_sees_every_key(T, extra):
    S = T + extra
    m = causal_mask(np, T, S)
    assert m.shape == (T, S)
    np.testing.assert_array_equal(m, np.tril(np.ones((T, S), dtype=bool), k=S - T))
    assert m[-1].all()


# -------------------------------------------------------------- mask checks
@pytest.mark.parametrize("dtype", [np.int64, np.float32, np.uint8])
def test_non_bool_masks_raise_dtype_error(device, dtype):
    s = dict(B=2, T=3, S=4, heads=1, dim_head=2, dim=3, dim_context=5)
    x = leaf(np.zeros((2, 3, 3)), device)
    c = leaf(np.zeros((2, 4, 5)), device)
    self_attn, cross_attn = build(device, dict(s, dim_context=None)), build(device, s)
    with pytest.raises(minitx.DTypeError, match="mask"):
        self_attn(x, mask=on(device, np.ones((2, 3), dtype=dtype)))
    with pytest.raises(minitx.DTypeError, match="attn_mask"):
        self_attn(x, attn_mask=on(device, np.ones((2, 3, 3), dtype=dtype)))
    with pytest.raises(minitx.DTypeError, match="context_mask"):
        cross_attn(x, context=c, context_mask=on(device, np.ones((2, 4), dtype=dtype)))


@pytest.mark.parametrize("kind, shape, expected", [
    ("mask", (2, 4), (2, 3)),
    ("mask", (3,), (2, 3)),
    ("attn_mask", (2, 3), (2, 3, 3)),
    ("attn_mask", (1, 3, 3), (2, 3, 3)),
    ("context_mask", (2, 3), (2, 4)),
    ("context_mask", (4, 2), (2, 4)),
])
def test_wrong_shape_masks_raise_shape_error_with_both_shapes(device, kind, shape, expected):
    s = dict(B=2, T=3, S=4, heads=1, dim_head=2, dim=3, dim_context=5)
    x = leaf(np.zeros((2, 3, 3)), device)
    bad = on(device, np.ones(shape, dtype=bool))
    if kind == "context_mask":
        call = lambda: build(device, s)(x, context=leaf(np.zeros((2, 4, 5)), device), context_mask=bad)
    else:
        call = lambda: build(device, dict(s, dim_context=None))(x, **{kind: bad})
    with pytest.raises(minitx.ShapeError) as err:
        call()
    assert str(shape) in str(err.value) and str(expected) in str(err.value)
    assert re.search(rf"(^|[^_a-z]){kind} has shape", str(err.value))   # this mask, not another
