"""Fused neural-network ops: softmax, log_softmax, masked_softmax, embedding,
dropout, layer_norm and cross_entropy."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minitx
from minitx.testing import arrays, bool_masks, padding_masks, shapes, token_ids


def tensor(a, device, grad=False):
    return minitx.tensor(np.asarray(a, dtype=np.float64), device=device, requires_grad=grad)


def np_log_softmax(a, axis=-1):
    s = a - a.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


# ------------------------------------------------------------------- softmax
@given(a=arrays(shapes()), data=st.data())
def test_softmax(device, a, data):
    axis = data.draw(st.integers(-a.ndim, a.ndim - 1))
    x = tensor(a, device, grad=True)
    y = minitx.softmax(x, axis=axis).numpy()
    np.testing.assert_allclose(y.sum(axis=axis), 1.0, rtol=1e-12)          # rows sum to 1
    np.testing.assert_allclose(y, np.exp(np_log_softmax(a, axis)), rtol=1e-12)
    assert minitx.gradcheck(lambda t: minitx.softmax(t, axis=axis), x)
    assert x.grad.shape == a.shape


@given(a=arrays(shapes()), data=st.data())
def test_log_softmax(device, a, data):
    axis = data.draw(st.integers(-a.ndim, a.ndim - 1))
    x = tensor(a, device, grad=True)
    y = minitx.log_softmax(x, axis=axis).numpy()
    np.testing.assert_allclose(y, np.log(minitx.softmax(x, axis=axis).numpy()), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, np_log_softmax(a, axis), rtol=1e-12, atol=1e-12)
    assert minitx.gradcheck(lambda t: minitx.log_softmax(t, axis=axis), x)


@given(a=arrays(shapes(min_dims=2, max_dims=2)), offset=st.sampled_from([1e4, -1e4]))
def test_softmax_and_log_softmax_are_stable_for_large_logits(device, a, offset):
    x = tensor(a + offset, device, grad=True)
    y, ly = minitx.softmax(x), minitx.log_softmax(x)
    np.testing.assert_allclose(y.numpy(), np.exp(np_log_softmax(a)), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(ly.numpy(), np_log_softmax(a), rtol=1e-9, atol=1e-9)
    (y * y).sum().backward()
    ly.sum().backward()
    assert np.isfinite(x.grad.numpy()).all()


def test_softmax_methods(T):
    a = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(T(a).softmax().numpy(), np.exp(np_log_softmax(a)), rtol=1e-12)
    np.testing.assert_allclose(T(a).log_softmax(axis=0).numpy(), np_log_softmax(a, 0), rtol=1e-12)


# ------------------------------------------------------------ masked softmax
@given(data=st.data())
def test_masked_softmax(device, data):
    shape = data.draw(shapes(min_dims=1, max_dims=3))
    a, mask = data.draw(arrays(shape)), data.draw(bool_masks(shape))   # all-False rows included
    x, m = tensor(a, device, grad=True), minitx.tensor(mask, device=device)
    y = minitx.masked_softmax(x, m).numpy()
    full = mask.any(axis=-1)
    np.testing.assert_array_equal(y[~mask], 0.0)                       # masked entries get 0
    np.testing.assert_allclose(y.sum(-1), full.astype(float), rtol=1e-12)   # 1 per row, 0 if fully masked
    e = np.where(mask, np.exp(a - a.max(-1, keepdims=True)), 0.0)
    expected = e / np.where(full, e.sum(-1), 1.0)[..., None]
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-300)
    assert minitx.gradcheck(lambda t: minitx.masked_softmax(t, m), x)


def test_masked_softmax_fully_masked_rows_give_zeros_and_zero_gradient(T):
    x = T([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [1e4, -1e4, 0.0]], grad=True)
    mask = minitx.tensor(np.array([[True, False, True], [False, False, False], [True, True, False]]),
                         device=x.device)
    y = minitx.masked_softmax(x, mask)
    out = y.numpy()
    np.testing.assert_array_equal(out[1], 0.0)
    assert np.isfinite(out).all()
    (y * T(np.arange(9.0).reshape(3, 3))).sum().backward()
    g = x.grad.numpy()
    assert np.isfinite(g).all()
    np.testing.assert_array_equal(g[1], 0.0)
    np.testing.assert_array_equal(g[:, ~np.array([True, False, True])][0], 0.0)   # masked entry of row 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_masked_softmax_kept_scores_at_the_dtype_minimum(T, dtype):
    """Kept scores equal to the dtype's most negative value (a masked_fill before the mask)
    still share the row; the masked entries, though larger, get 0."""
    lo = np.finfo(dtype).min
    x = T([[lo, lo, 1.0, 2.0], [lo, 5.0, lo, 0.0]], dtype=dtype)
    mask = minitx.tensor(np.array([[True, True, False, False], [True, False, True, False]]), device=x.device)
    np.testing.assert_array_equal(minitx.masked_softmax(x, mask).numpy(), [[0.5, 0.5, 0, 0], [0.5, 0, 0.5, 0]])


@given(data=st.data())
def test_masked_softmax_with_broadcast_key_padding_mask(device, data):
    B, H, T_, S = (data.draw(st.integers(1, 3)) for _ in range(4))
    keep = data.draw(padding_masks(B, S, min_valid=0))                 # (B, S), True = real token
    a = data.draw(arrays((B, H, T_, S)))
    x = tensor(a, device, grad=True)
    m = minitx.tensor(keep[:, None, None, :], device=device)           # (B, 1, 1, S)
    y = minitx.masked_softmax(x, m).numpy()
    assert y.shape == (B, H, T_, S)
    np.testing.assert_allclose(y.sum(-1), np.broadcast_to(keep.any(-1)[:, None, None], (B, H, T_)) * 1.0,
                               rtol=1e-12)
    assert minitx.gradcheck(lambda t: minitx.masked_softmax(t, m), x)


def test_masked_softmax_needs_boolean_mask(T):
    with pytest.raises(minitx.DTypeError, match="boolean"):
        minitx.masked_softmax(T(np.ones((2, 3))), T(np.ones((2, 3))))


# ------------------------------------------------------------------ embedding
@given(data=st.data())
def test_embedding_with_repeated_indices(device, data):
    V, D = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    idx_shape = data.draw(shapes(min_dims=1, max_dims=2))
    idx = data.draw(token_ids(idx_shape, V))
    w = data.draw(arrays((V, D)))
    W, i = tensor(w, device, grad=True), minitx.tensor(idx, device=device)
    out = minitx.embedding(i, W)
    np.testing.assert_array_equal(out.numpy(), w[idx])
    assert minitx.gradcheck(lambda t: minitx.embedding(i, t), W)
    W.grad = None
    minitx.embedding(i, W).sum().backward()       # row v gets one gradient per use
    counts = np.bincount(idx.ravel(), minlength=V).astype(float)
    np.testing.assert_array_equal(W.grad.numpy(), np.repeat(counts[:, None], D, axis=1))


def test_embedding_rejects_bad_indices(device):
    if device == "gpu":
        pytest.skip("the range check is CPU-only (no host sync on the GPU)")
    W = minitx.tensor(np.ones((3, 2)), device=device)
    with pytest.raises(minitx.ShapeError, match="out of range.*3 rows"):
        minitx.embedding(minitx.tensor(np.array([0, 3]), device=device), W)
    with pytest.raises(minitx.DTypeError, match="integers"):
        minitx.embedding(minitx.tensor(np.array([0.0, 1.0]), device=device), W)


# -------------------------------------------------------------------- dropout
@given(a=arrays(shapes(), min_value=0.5, max_value=3.0), p=st.sampled_from([0.1, 0.5, 0.9]),
       seed=st.integers(0, 2**32 - 1))
def test_dropout_scales_kept_values_and_gradient_equals_mask(device, a, p, seed):
    minitx.manual_seed(seed)
    x = tensor(a, device, grad=True)
    y = minitx.dropout(x, p=p)
    out = y.numpy()
    kept = out != 0                                # inputs are >= 0.5, so 0 means dropped
    np.testing.assert_allclose(out[kept], a[kept] / (1 - p), rtol=1e-12)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), kept / (1 - p), rtol=1e-12)   # d(x * mask)/dx = mask

    def same_mask_dropout(t):            # re-seeding draws the same mask on every call
        minitx.manual_seed(seed)
        return minitx.dropout(t, p=p)

    assert minitx.gradcheck(same_mask_dropout, x)


def test_dropout_drops_about_p(device):
    minitx.manual_seed(0)
    out = minitx.dropout(minitx.ones(100_000, device=device), p=0.3).numpy()
    assert abs((out == 0).mean() - 0.3) < 0.01
    np.testing.assert_allclose(out[out != 0], 1 / 0.7, rtol=1e-6)
    assert abs(out.mean() - 1.0) < 0.02            # the scaling keeps the mean


def test_dropout_is_identity_in_eval_and_for_p_zero(T):
    x = T(np.arange(6.0).reshape(2, 3), grad=True)
    assert minitx.dropout(x, p=0.5, training=False) is x
    assert minitx.dropout(x, p=0.0) is x


def test_dropout_rejects_bad_p(T):
    for p in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="p must be in"):
            minitx.dropout(T([1.0]), p=p)


# ----------------------------------------------------------------- layer_norm
@given(data=st.data(), with_bias=st.booleans())
def test_layer_norm(device, data, with_bias):
    shape = data.draw(shapes(min_dims=1, max_dims=3))
    assume(shape[-1] > 1)                          # a single feature normalises to 0
    a = data.draw(arrays(shape))
    assume(np.all(a.std(-1) > 0.1))                # near-constant rows: 1/std is steep
    w, b = data.draw(arrays(shape[-1:])), data.draw(arrays(shape[-1:]))
    x, W, B = tensor(a, device, grad=True), tensor(w, device, grad=True), tensor(b, device, grad=True)
    xhat = (a - a.mean(-1, keepdims=True)) / np.sqrt(a.var(-1, keepdims=True) + 1e-5)
    if with_bias:
        out = minitx.layer_norm(x, W, B)
        np.testing.assert_allclose(out.numpy(), xhat * w + b, rtol=1e-10, atol=1e-12)
        assert minitx.gradcheck(minitx.layer_norm, x, W, B)
    else:
        out = minitx.layer_norm(x, W)
        np.testing.assert_allclose(out.numpy(), xhat * w, rtol=1e-10, atol=1e-12)
        assert minitx.gradcheck(minitx.layer_norm, x, W)


def test_layer_norm_rejects_wrong_weight_shape(T):
    with pytest.raises(minitx.ShapeError, match=r"weight shape \(3,\)"):
        minitx.layer_norm(T(np.ones((2, 4))), T(np.ones(3)))


# -------------------------------------------------------------- cross_entropy
def np_cross_entropy(logits, target, ignore_index, smoothing, reduction):
    logp = np_log_softmax(logits)
    valid = target != ignore_index
    safe = np.where(valid, target, 0)
    nll = -np.take_along_axis(logp, safe[..., None], -1)[..., 0]
    loss = (1 - smoothing) * nll - smoothing * logp.mean(-1)
    loss = np.where(valid, loss, 0.0)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / max(valid.sum(), 1)


@given(data=st.data(), smoothing=st.sampled_from([0.0, 0.1, 0.5]),
       reduction=st.sampled_from(["mean", "sum", "none"]))
def test_cross_entropy(device, data, smoothing, reduction):
    lead = data.draw(shapes(min_dims=1, max_dims=2))
    V = data.draw(st.integers(1, 5))
    a = data.draw(arrays(lead + (V,)))
    target = data.draw(token_ids(lead, V))
    ignore = data.draw(st.sampled_from([-100, 0]))
    ignored = data.draw(bool_masks(lead))          # random ignore positions
    target = np.where(ignored, ignore, target)
    x, t = tensor(a, device, grad=True), minitx.tensor(target, device=device)
    kw = dict(ignore_index=ignore, label_smoothing=smoothing, reduction=reduction)
    out = minitx.cross_entropy(x, t, **kw)
    expected = np_cross_entropy(a, target, ignore, smoothing, reduction)
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-12)
    assert minitx.gradcheck(lambda z: minitx.cross_entropy(z, t, **kw), x)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_all_ignored_gives_zero_and_zero_gradient(T, reduction, smoothing):
    x = T(np.random.default_rng(0).standard_normal((2, 3, 4)), grad=True)
    t = minitx.tensor(np.full((2, 3), -100), device=x.device)
    out = minitx.cross_entropy(x, t, label_smoothing=smoothing, reduction=reduction)
    np.testing.assert_array_equal(out.numpy(), np.zeros(out.shape))
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros((2, 3, 4)))   # zero, not NaN


def test_cross_entropy_out_of_range_target(device):
    x = minitx.tensor(np.zeros((2, 3)), device=device)
    t = minitx.tensor(np.array([0, 3]), device=device)
    if device == "gpu":     # no host sync on the GPU: the bad row's loss is NaN instead
        assert np.isnan(minitx.cross_entropy(x, t, reduction="none").numpy()[1])
        return
    with pytest.raises(minitx.ShapeError, match=r"target value 3 is outside \[0, 3\)"):
        minitx.cross_entropy(x, t)
    with pytest.raises(minitx.ShapeError, match="target value -1"):
        minitx.cross_entropy(x, minitx.tensor(np.array([-1, 0]), device=device))


def test_cross_entropy_argument_errors(T):
    x = T(np.zeros((2, 3)))
    with pytest.raises(minitx.ShapeError, match=r"target of shape \(2,\)"):
        minitx.cross_entropy(x, minitx.tensor(np.array([0, 1, 2]), device=x.device))
    with pytest.raises(minitx.DTypeError, match="integer"):
        minitx.cross_entropy(x, T([0.0, 1.0]))
    with pytest.raises(ValueError, match="reduction"):
        minitx.cross_entropy(x, minitx.tensor(np.array([0, 1]), device=x.device), reduction="avg")


def test_cross_entropy_of_confident_correct_logits_is_small(T):
    x = T([[20.0, 0.0, 0.0], [0.0, 0.0, 1e4]])
    loss = minitx.cross_entropy(x, minitx.tensor(np.array([0, 2]), device=x.device))
    assert 0 <= loss.item() < 1e-8


# ------------------------------------------------------- row reductions (CPU fast paths)
@given(data=st.data(), S=st.integers(0, 80), dtype=st.sampled_from([np.float64, np.float32]),
       transposed=st.booleans())                     # S crosses the column-loop limit of 64
def test_row_reductions_equal_numpy(data, S, dtype, transposed):
    from minitx.autograd.ops.nn import row_dot, row_max, row_sum
    lead = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=3).map(tuple))
    a = data.draw(arrays(lead + (S,), dtype=dtype))
    b = data.draw(arrays(lead + (S,), dtype=dtype))
    if transposed:                                   # non-contiguous inputs are right too
        a, b = (np.ascontiguousarray(np.swapaxes(t, 0, -1)).swapaxes(0, -1) for t in (a, b))
    tol = 1e-12 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(row_sum(a), a.sum(axis=-1, keepdims=True), rtol=tol, atol=tol)
    np.testing.assert_allclose(row_dot(a, b), (a * b).sum(axis=-1, keepdims=True), rtol=tol, atol=tol)
    if S > 0:
        np.testing.assert_array_equal(row_max(a), a.max(axis=-1, keepdims=True))


@pytest.mark.parametrize("S", [5, 100])
def test_row_max_propagates_nan(S):
    from minitx.autograd.ops.nn import row_max
    a = np.zeros((3, S))
    a[1, S // 2] = np.nan
    m = row_max(a)
    assert np.isnan(m[1, 0]) and (m[[0, 2]] == 0).all()
