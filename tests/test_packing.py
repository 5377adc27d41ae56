"""Skipping padded positions: the row ops (take_rows / put_rows), RowPacking, and the
models' skip_padding, which must give the loss and gradients of the padded layout."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitx
from minitx import nn
from minitx.autograd.higher_order import grad
from minitx.nn.packing import RowPacking, packing_for, rows_before_last_label
from minitx.testing import arrays

V = 7   # vocabulary of the tiny models


def tensor(a, device, grad=False):
    return minitx.tensor(np.asarray(a, dtype=np.float64), device=device, requires_grad=grad)


@st.composite
def rows_and_index(draw):
    """x (R, F) and N distinct row numbers of it, in any order."""
    R, F = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    x = draw(arrays((R, F)))
    index = np.array(draw(st.permutations(range(R)))[:draw(st.integers(0, R))], dtype=np.int64)
    return x, index


# ------------------------------------------------------------------ the two ops
@given(rows_and_index())
def test_take_rows_values_and_gradient(device, case):
    a, index = case
    x = tensor(a, device, grad=True)
    idx = minitx.backend.to_device(index, device)
    np.testing.assert_array_equal(minitx.take_rows(x, idx).numpy(), a[index])
    assert minitx.gradcheck(lambda t: minitx.take_rows(t, idx), x)


@given(rows_and_index(), st.integers(0, 3))
def test_put_rows_values_and_gradient(device, case, extra):
    a, index = case
    rows = a.shape[0] + extra                       # room for rows that stay zero
    h = tensor(a[:len(index)], device, grad=True)
    idx = minitx.backend.to_device(index, device)
    want = np.zeros((rows, a.shape[1]))
    want[index] = a[:len(index)]
    np.testing.assert_array_equal(minitx.put_rows(h, idx, rows).numpy(), want)
    assert minitx.gradcheck(lambda t: minitx.put_rows(t, idx, rows), h)


@given(rows_and_index())
def test_row_ops_second_derivatives(device, case):
    """Exact second derivatives of x * x through take_rows (the full check of backward_graph,
    with a gradient that depends on x, is test_higher_order.test_row_ops_second_derivatives)."""
    a, index = case
    x = tensor(a, device, grad=True)
    idx = minitx.backend.to_device(index, device)
    w = tensor(np.arange(len(index) * a.shape[1]).reshape(len(index), a.shape[1]) + 1.0, device)
    (gx,) = grad((minitx.take_rows(x * x, idx) * w).sum(), [x], create_graph=True)   # 2 x w at the rows
    (ggx,) = grad(gx.sum(), [x])
    want = np.zeros_like(a)
    want[index] = 2 * w.numpy()
    np.testing.assert_allclose(ggx.numpy(), want)


@given(rows_and_index())
def test_put_rows_second_derivatives(device, case):
    a, index = case
    h = tensor(a[:len(index)], device, grad=True)
    idx = minitx.backend.to_device(index, device)
    w = tensor(np.arange(a.size).reshape(a.shape) + 1.0, device)
    (gh,) = grad((minitx.put_rows(h * h, idx, a.shape[0]) * w).sum(), [h], create_graph=True)   # 2 h w[index]
    (ggh,) = grad(gh.sum(), [h])
    np.testing.assert_allclose(ggh.numpy(), 2 * w.numpy()[index])


def test_row_ops_check_their_arguments(T):
    x = T(np.ones((3, 2)))
    with pytest.raises(minitx.InputError, match="index must be a 1-D integer array"):
        minitx.take_rows(x, np.array([0.0, 1.0]))
    with pytest.raises(minitx.InputError, match="index must be a 1-D integer array"):
        minitx.take_rows(x, np.array([[0, 1]]))
    with pytest.raises(minitx.ShapeError, match="index has 1 row numbers but h has 3 rows"):
        minitx.put_rows(x, np.array([0]), 4)
    with pytest.raises(minitx.ShapeError, match="x must have at least one axis"):
        minitx.take_rows(T(1.0), np.array([0]))
    with pytest.raises(minitx.ShapeError, match="h must have at least one axis"):
        minitx.put_rows(T(1.0), np.array([0]), 2)
    if minitx.backend.device_of(x.data) == "cpu":       # values are checked on host arrays
        with pytest.raises(minitx.InputError, match="repeats a row number"):
            minitx.take_rows(x, np.array([0, 0]))
        with pytest.raises(minitx.InputError, match="outside \\[0, 3\\)"):
            minitx.take_rows(x, np.array([-1]))
        with pytest.raises(minitx.InputError, match="outside \\[0, 2\\)"):
            minitx.put_rows(x, np.array([0, 1, 2]), 2)
    with pytest.raises(minitx.InputError, match="rows .* must be an integer >= 0"):
        minitx.put_rows(x, np.array([0, 1, 2]), 3.0)


# ------------------------------------------------------------------ RowPacking
@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 3), st.data())
def test_pack_then_unpack_keeps_the_real_rows_and_zeros_the_rest(B, L, F, data):
    keep = np.array(data.draw(st.lists(st.booleans(), min_size=B * L, max_size=B * L))).reshape(B, L)
    a = np.random.default_rng(B * L * F).normal(size=(B, L, F))
    p = RowPacking(keep)
    packed = p.pack(minitx.tensor(a))
    assert p.rows == keep.sum() and packed.shape == (p.rows, F)
    np.testing.assert_array_equal(packed.numpy(), a[keep])           # batch-major order
    np.testing.assert_array_equal(p.unpack(packed).numpy(), np.where(keep[..., None], a, 0.0))


def test_row_packing_checks_shapes():
    p = RowPacking(np.array([[True, False], [True, True]]))
    with pytest.raises(minitx.ShapeError, match=r"expected \(2, 2, features\)"):
        p.pack(minitx.tensor(np.ones((2, 3, 4))))
    with pytest.raises(minitx.ShapeError, match=r"expected \(3, features\)"):
        p.unpack(minitx.tensor(np.ones((4, 4))))
    with pytest.raises(minitx.ShapeError, match=r"expected \(2, 2, features\)"):
        p.pack(minitx.tensor(np.ones((2, 2))))
    with pytest.raises(minitx.DTypeError, match="boolean mask"):
        RowPacking(np.ones((2, 2), int))
    with pytest.raises(minitx.ShapeError, match="length\\) mask"):
        RowPacking(np.ones(3, bool))


def test_packing_for_skips_only_when_it_saves_work():
    assert packing_for(None) is None
    assert packing_for(np.ones((2, 3), bool)) is None                  # nothing to skip
    assert packing_for(np.zeros((2, 3), bool)) is None                 # nothing to compute
    assert packing_for(np.array([[True, False]])).rows == 1


@given(st.integers(1, 4), st.integers(1, 6), st.data())
def test_rows_before_last_label(B, L, data):
    labels = np.array(data.draw(st.lists(st.sampled_from([-100, 3]), min_size=B * L, max_size=B * L))).reshape(B, L)
    got = rows_before_last_label(labels, -100)
    want = np.array([[(labels[b, t:] != -100).any() for t in range(L)] for b in range(B)])
    np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------ the models
def tiny(skip_padding, depth=1, **kw):
    minitx.manual_seed(0)
    return nn.XTransformer(dim=8, enc_num_tokens=V, enc_max_seq_len=6, dec_num_tokens=V, dec_max_seq_len=6,
                           enc_depth=depth, dec_depth=depth, enc_heads=2, dec_heads=2, enc_dim_head=3,
                           dec_dim_head=3, enc_ff_mult=2, dec_ff_mult=2, tie_token_emb=True,
                           skip_padding=skip_padding, **kw).to(dtype=np.float64)


@st.composite
def padded_batches(draw):
    """src (B, S), tgt (B, T), mask: any mask (not only prefixes, rows may be empty) and
    ignored labels anywhere, including whole rows."""
    B, S, T = draw(st.integers(1, 4)), draw(st.integers(1, 6)), draw(st.integers(2, 7))
    g = np.random.default_rng(draw(st.integers(0, 2**16)))
    src = g.integers(0, V, size=(B, S))
    mask = g.random((B, S)) < draw(st.sampled_from([0.5, 0.8, 1.0]))
    tgt = g.integers(0, V, size=(B, T))
    tgt[:, 1:][g.random((B, T - 1)) < draw(st.sampled_from([0.0, 0.3, 0.7]))] = -100
    return src, tgt, mask


def loss_and_grads(model, src, tgt, mask):
    loss = model(src, tgt, mask=mask)
    loss.backward()
    return loss.item(), {n: p.grad.numpy() for n, p in model.named_parameters()}


@given(padded_batches(), st.integers(1, 2))
def test_skipping_padding_gives_the_same_loss_and_gradients(batch, depth):
    src, tgt, mask = batch
    loss0, grads0 = loss_and_grads(tiny(False, depth), src, tgt, mask)
    loss1, grads1 = loss_and_grads(tiny(True, depth), src, tgt, mask)
    assert loss1 == pytest.approx(loss0, rel=1e-12, abs=1e-12)
    for name, g in grads0.items():
        np.testing.assert_allclose(grads1[name], g, rtol=1e-9, atol=1e-12, err_msg=name)


def test_skipping_padding_computes_fewer_rows(monkeypatch):
    """The test above can pass with packing silently off: count the rows the linears see."""
    from minitx.autograd.ops.linalg import Linear
    seen = []
    forward = Linear.forward

    def counting(self, x, *rest):
        seen.append(x.reshape(-1, x.shape[-1]).shape[0])
        return forward(self, x, *rest)
    monkeypatch.setattr(Linear, "forward", counting)
    src = np.array([[3, 4, 5, 6], [3, 4, 0, 0]])
    tgt = np.array([[1, 6, 5, 4, 3, 2], [1, 4, 3, 2, -100, -100]])
    mask = src != 0
    for skip in (False, True):
        seen.clear()
        tiny(skip)(src, tgt, mask=mask)
        if skip:
            assert max(seen) < 2 * 5 and 6 in seen      # 6 real source rows of 8, 8 decoder rows of 10
        else:
            assert min(seen) == 2 * 4                   # every position


def test_encode_zeros_the_skipped_positions():
    src = np.array([[3, 4, 5], [3, 0, 0]])
    mask = src != 0
    full, packed = tiny(False).encode(src, mask=mask).numpy(), tiny(True).encode(src, mask=mask).numpy()
    np.testing.assert_allclose(packed[mask], full[mask], rtol=1e-12)
    assert (packed[~mask] == 0).all() and (full[~mask] != 0).all()


def test_skipping_padding_with_dropout_gives_a_finite_loss_and_gradients():
    model = tiny(True, enc_attn_dropout=0.3, dec_ff_dropout=0.3, enc_emb_dropout=0.2)
    model.train()
    src = np.array([[3, 4, 5], [3, 0, 0]])
    tgt = np.array([[1, 5, 4, 3], [1, 3, -100, -100]])
    loss = model(src, tgt, mask=src != 0)
    loss.backward()
    assert np.isfinite(loss.item()) and all(np.isfinite(p.grad.numpy()).all() for p in model.parameters())


def test_attention_with_packing_refuses_a_cache_and_wrong_rows():
    attn = nn.Attention(8, heads=2, dim_head=4)
    p = RowPacking(np.array([[True, False, True]]))
    with pytest.raises(minitx.InputError, match="cannot be combined"):
        attn(minitx.tensor(np.ones((2, 8), np.float32)), packing=p, cache=nn.attention.KVCache())
    with pytest.raises(minitx.ShapeError, match=r"shape \(2, 8\)"):
        attn(minitx.tensor(np.ones((1, 3, 8), np.float32)), packing=p)


@given(st.integers(1, 3), st.integers(1, 5), st.booleans(), st.data())
def test_packed_attention_treats_skipped_positions_as_padding_keys(B, L, causal, data):
    """Packed self-attention = padded attention with the kept positions as its key mask."""
    keep = np.array(data.draw(st.lists(st.booleans(), min_size=B * L, max_size=B * L))).reshape(B, L)
    minitx.manual_seed(1)
    attn = nn.Attention(6, heads=2, dim_head=3, causal=causal).to(dtype=np.float64)
    x = np.random.default_rng(B * L).normal(size=(B, L, 6))
    p = RowPacking(keep)
    got = attn(p.pack(minitx.tensor(x)), packing=p).numpy()                       # (N, 6)
    want = attn(minitx.tensor(x), mask=keep).numpy()[keep]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_attention_dropout_draws_the_same_masks_packed_or_not():
    """Attention dropout keeps the (B, H, T, S) layout: the same draws, so the same loss exactly."""
    src = np.array([[3, 4, 5], [3, 0, 6]])
    tgt = np.array([[1, 5, 4, 3], [1, 3, -100, -100]])
    losses = []
    for skip in (False, True):
        model = tiny(skip, enc_attn_dropout=0.3, dec_attn_dropout=0.3)
        model.train()
        minitx.manual_seed(5)
        losses.append(model(src, tgt, mask=src != 0).item())
    assert losses[1] == pytest.approx(losses[0], rel=1e-12)


@given(padded_batches())
def test_generation_is_the_same_with_or_without_skipping(batch):
    src, _, mask = batch
    start = np.ones((src.shape[0], 1), int)
    outs = [tiny(skip).generate(src, start, 4, mask=mask, temperature=0.0) for skip in (False, True)]
    np.testing.assert_array_equal(outs[0], outs[1])


def test_no_source_mask_packs_only_the_decoder():
    src = np.array([[3, 4, 5], [3, 2, 6]])
    tgt = np.array([[1, 5, 4, 3], [1, 3, -100, -100]])
    loss0, grads0 = loss_and_grads(tiny(False), src, tgt, None)
    loss1, grads1 = loss_and_grads(tiny(True), src, tgt, None)
    assert loss1 == pytest.approx(loss0, rel=1e-12)
    for name, g in grads0.items():
        np.testing.assert_allclose(grads1[name], g, rtol=1e-9, atol=1e-12, err_msg=name)


def test_skip_padding_is_one_switch_for_encoder_and_decoder():
    model = tiny(True)
    model.skip_padding = False
    assert model.skip_padding is False and model.decoder.skip_padding is False
    src = np.array([[3, 4, 0]])
    assert (model.encode(src, mask=src != 0).numpy()[0, 2] != 0).all()   # computed: not skipped
