"""Tests for minitx.nn.layers: forward values against NumPy, gradient checks
w.r.t. inputs and every parameter (float64), dropout statistics, positional
embeddings and initialisation."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitx
from minitx import backend, gradcheck
from minitx.nn import (AbsolutePositionalEmbedding, Dropout, Embedding, FeedForward, LayerNorm,
                       Linear, SinusoidalPositionalEmbedding)
from minitx.testing import arrays, shapes, token_ids


def leaf(a, device):
    return minitx.tensor(np.asarray(a, dtype=np.float64), device=device, requires_grad=True)


def as64(layer, device):
    """The layer in float64 on the device under test (for gradient checks)."""
    return layer.double().to(device)


# ------------------------------------------------------------------- Linear
@given(st.integers(1, 4), st.integers(1, 4), st.booleans(), shapes(min_dims=0, max_dims=2, max_side=3),
       st.data())
def test_linear_gradcheck(device, fan_in, fan_out, bias, lead, data):
    lin = as64(Linear(fan_in, fan_out, bias=bias), device)
    assert len(lin.parameters()) == (2 if bias else 1)
    x = leaf(data.draw(arrays(lead + (fan_in,))), device)
    gradcheck(lambda x, *ps: lin(x), x, *lin.parameters())


@given(st.integers(1, 4), st.integers(1, 4), st.booleans(), shapes(min_dims=0, max_dims=2, max_side=3),
       st.data())
def test_linear_matches_numpy(device, fan_in, fan_out, bias, lead, data):
    lin = as64(Linear(fan_in, fan_out, bias=bias), device)
    x = data.draw(arrays(lead + (fan_in,)))
    w = lin.weight.numpy()
    expected = x @ w.T + (lin.bias.numpy() if bias else 0.0)
    out = lin(leaf(x, device))
    assert out.shape == lead + (fan_out,)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_linear_wrong_input_width_is_a_shape_error(device):
    lin = Linear(3, 2).to(device)
    with pytest.raises(minitx.ShapeError, match=r"\(2, 4\)"):
        lin(minitx.zeros(2, 4, device=device))


# ---------------------------------------------------------------- LayerNorm
@given(st.integers(1, 5), st.booleans(), st.booleans(), shapes(min_dims=0, max_dims=2, max_side=3),
       st.data())
def test_layer_norm_gradcheck(device, dim, bias, random_affine, lead, data):
    ln = LayerNorm(dim, bias=bias)
    if random_affine:                                        # non-1 gain and non-0 shift
        ln.weight.data = data.draw(arrays((dim,))).astype(np.float32)
        if bias:
            ln.bias.data = data.draw(arrays((dim,))).astype(np.float32)
    ln = as64(ln, device)
    assert len(ln.parameters()) == (2 if bias else 1)
    x = leaf(data.draw(arrays(lead + (dim,))), device)
    gradcheck(lambda x, *ps: ln(x), x, *ln.parameters())


@given(st.integers(1, 5), st.booleans(), st.integers(1, 3), st.data())
def test_layer_norm_in_row_blocks(device, dim, bias, rows_per_block, data):
    """Several row blocks (the last one shorter unless the block size divides 7) give the same
    values and right gradients."""
    ln = LayerNorm(dim, bias=bias)
    ln.weight.data = data.draw(arrays((dim,))).astype(np.float32)
    ln = as64(ln, device)
    x = leaf(data.draw(arrays((7, dim))), device)
    whole = ln(x).numpy()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(minitx.backend, "CACHE_BLOCK", rows_per_block * dim)
        np.testing.assert_allclose(ln(x).numpy(), whole, rtol=1e-12, atol=1e-12)
        gradcheck(lambda x, *ps: ln(x), x, *ln.parameters())


@given(st.integers(1, 5), st.booleans(), shapes(min_dims=0, max_dims=2, max_side=3),
       st.sampled_from([1e-5, 1e-2, 1.0]), st.data())
def test_layer_norm_matches_numpy(device, dim, bias, lead, eps, data):
    ln = LayerNorm(dim, bias=bias, eps=eps)
    ln.weight.data = data.draw(arrays((dim,))).astype(np.float32)
    if bias:
        ln.bias.data = data.draw(arrays((dim,))).astype(np.float32)
    ln = as64(ln, device)
    x = data.draw(arrays(lead + (dim,)))
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    expected = (x - mu) / np.sqrt(var + eps) * ln.weight.numpy() + (ln.bias.numpy() if bias else 0.0)
    np.testing.assert_allclose(ln(leaf(x, device)).numpy(), expected, rtol=1e-10, atol=1e-10)


# -------------------------------------------------------------- FeedForward
@given(st.integers(1, 3), st.sampled_from([1, 2]), st.one_of(st.none(), st.integers(1, 3)),
       st.booleans(), st.booleans(), shapes(min_dims=1, max_dims=2, max_side=3), st.data())
def test_feed_forward_gradcheck(device, dim, mult, dim_out, bias, approximate, lead, data):
    ff = as64(FeedForward(dim, mult=mult, dim_out=dim_out, dropout=0.0, bias=bias,
                          approximate_gelu=approximate), device)
    assert len(ff.parameters()) == (4 if bias else 2)
    x = leaf(data.draw(arrays(lead + (dim,))), device)
    out = ff(x)
    assert out.shape == lead + (dim_out or dim,)
    gradcheck(lambda x, *ps: ff(x), x, *ff.parameters())


@given(st.integers(1, 4), st.booleans(), st.booleans(), st.data())
def test_feed_forward_matches_numpy(device, dim, bias, approximate, data):
    ff = as64(FeedForward(dim, mult=2, bias=bias, approximate_gelu=approximate), device)
    x = data.draw(arrays((2, dim)))

    def lin(layer, a):
        return a @ layer.weight.numpy().T + (layer.bias.numpy() if bias else 0.0)

    h = lin(ff.proj_in, x)
    if approximate:
        h = 0.5 * h * (1 + np.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))
    else:
        h = 0.5 * h * (1 + np.vectorize(math.erf)(h / math.sqrt(2)))
    np.testing.assert_allclose(ff(leaf(x, device)).numpy(), lin(ff.proj_out, h), rtol=1e-9, atol=1e-12)


def test_feed_forward_dropout_only_in_training(device):
    ff = FeedForward(4, dropout=0.5).to(device)
    plain = FeedForward(4, dropout=0.0).to(device)
    plain.load_state_dict(ff.state_dict())
    x = minitx.randn(3, 4, device=device)
    ff.eval()
    np.testing.assert_array_equal(ff(x).numpy(), ff(x).numpy())
    np.testing.assert_array_equal(ff(x).numpy(), plain(x).numpy())     # eval: no dropout at all
    ff.train()
    assert not np.array_equal(ff(x).numpy(), ff(x).numpy())


# ---------------------------------------------------------------- Embedding
@given(st.integers(1, 4), st.integers(1, 3), st.data())
def test_embedding_gradcheck_with_repeated_ids(device, vocab, dim, data):
    emb = as64(Embedding(vocab, dim), device)
    ids = data.draw(token_ids(st.tuples(st.integers(1, 2), st.integers(1, 4)), vocab))
    ids = np.concatenate([ids, ids[:, :1]], axis=1)          # every row repeats its first id
    ids_t = minitx.tensor(ids, device=device)
    out = emb(ids_t)
    np.testing.assert_array_equal(out.numpy(), emb.weight.numpy()[ids])
    gradcheck(lambda w: emb(ids_t), emb.weight)
    # repeated ids add up: d sum(out) / d weight[r] = count of r
    emb.zero_grad()
    emb(ids_t).sum().backward()
    counts = np.bincount(ids.ravel(), minlength=vocab)[:, None] * np.ones(dim)
    np.testing.assert_array_equal(emb.weight.grad.numpy(), counts)


def test_embedding_bad_ids(device):
    emb = Embedding(4, 2).to(device)
    with pytest.raises(minitx.DTypeError):
        emb(minitx.tensor(np.array([0.0, 1.0]), device=device))
    if device == "cpu":                                      # checked on the host only
        with pytest.raises(minitx.ShapeError, match="4 rows"):
            emb(minitx.tensor(np.array([0, 4])))


@given(st.integers(1, 4), st.integers(1, 3), st.integers(0, 3), st.data())
def test_absolute_positional_embedding_gradcheck_and_values(device, dim, length, offset, data):
    pos = as64(AbsolutePositionalEmbedding(dim, max_seq_len=length + offset), device)
    assert [n for n, _ in pos.named_parameters()] == ["emb.weight"]
    out = pos(length, offset=offset)
    assert out.shape == (length, dim)
    table = pos.emb.weight.numpy()
    np.testing.assert_allclose(out.numpy(), table[offset:offset + length] * dim ** -0.5, rtol=1e-12)
    gradcheck(lambda *ps: pos(length, offset=offset), *pos.parameters())


def test_absolute_positional_embedding_too_long(device):
    pos = AbsolutePositionalEmbedding(4, max_seq_len=5).to(device)
    assert pos(5).shape == (5, 4)
    with pytest.raises(minitx.ShapeError, match="max_seq_len"):
        pos(4, offset=2)


# ------------------------------------------------------------------ Dropout
@given(arrays(shapes(max_side=5)), st.floats(0.05, 0.95))
def test_dropout_identity_in_eval_and_with_p_zero(device, a, p):
    x = leaf(a, device)
    drop = Dropout(p).eval()
    np.testing.assert_array_equal(drop(x).numpy(), a)
    zero = Dropout(0.0).train()
    np.testing.assert_array_equal(zero(x).numpy(), a)


@given(st.floats(0.05, 0.9), st.integers(0, 2**31 - 1))
def test_dropout_train_statistics_and_gradient(device, p, seed):
    minitx.manual_seed(seed)
    n = 20000
    a = np.random.default_rng(seed).uniform(1.0, 2.0, size=(4, n // 4))    # no zeros of its own
    x = leaf(a, device)
    drop = Dropout(p).to(device)
    y = drop(x)
    out = y.numpy()
    dropped = out == 0
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(dropped.mean() - p) < 5 * sigma + 1e-3, (dropped.mean(), p)
    np.testing.assert_allclose(out[~dropped], a[~dropped] / (1 - p), rtol=1e-12)
    y.sum().backward()                                      # gradient: the same mask
    np.testing.assert_allclose(x.grad.numpy(), np.where(dropped, 0.0, 1 / (1 - p)), rtol=1e-12)


def test_dropout_repeatable_with_manual_seed(device):
    x = minitx.ones(50, 40, device=device)
    drop = Dropout(0.5)
    minitx.manual_seed(123)
    first, second = drop(x).numpy(), drop(x).numpy()
    minitx.manual_seed(123)
    np.testing.assert_array_equal(drop(x).numpy(), first)
    np.testing.assert_array_equal(drop(x).numpy(), second)
    assert not np.array_equal(first, second)                 # fresh mask each call


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_bad_probability(p):
    with pytest.raises(ValueError, match="p must be"):
        Dropout(p)


# ----------------------------------------------------- sinusoidal positions
@given(st.integers(1, 4).map(lambda h: 2 * h), st.integers(1, 6), st.integers(0, 5))
def test_sinusoidal_matches_formula(device, dim, length, offset):
    pos = SinusoidalPositionalEmbedding(dim).to(device)
    assert pos.num_params == 0
    out = pos(length, offset=offset)
    assert out.shape == (length, dim) and out.device == device
    table = out.numpy()
    for row, p in enumerate(range(offset, offset + length)):
        for i in range(dim // 2):
            freq = 10000.0 ** (-2 * i / dim)
            assert table[row, i] == pytest.approx(math.sin(p * freq), abs=1e-6)
            assert table[row, dim // 2 + i] == pytest.approx(math.cos(p * freq), abs=1e-6)
    np.testing.assert_allclose(pos(offset + length).numpy()[offset:], table, atol=1e-6)


def test_sinusoidal_known_values():
    table = SinusoidalPositionalEmbedding(4, theta=100.0)(3).numpy()
    # frequencies 1 and 100 ** -0.5 = 0.1
    expected = np.array([[0, 0, 1, 1],
                         [math.sin(1), math.sin(0.1), math.cos(1), math.cos(0.1)],
                         [math.sin(2), math.sin(0.2), math.cos(2), math.cos(0.2)]])
    np.testing.assert_allclose(table, expected, atol=1e-6)


@pytest.mark.parametrize("dim", [1, 3, 7])
def test_sinusoidal_odd_dim_raises(dim):
    with pytest.raises(ValueError, match="even"):
        SinusoidalPositionalEmbedding(dim)


# ------------------------------------------------------------ initialisation
@given(st.integers(1, 64), st.integers(1, 16))
def test_linear_init_within_bound(fan_in, fan_out):
    lin = Linear(fan_in, fan_out)
    bound = 1 / math.sqrt(fan_in)
    assert lin.weight.shape == (fan_out, fan_in) and lin.bias.shape == (fan_out,)
    assert lin.weight.dtype == np.float32
    assert np.abs(lin.weight.numpy()).max() <= bound
    assert np.abs(lin.bias.numpy()).max() <= bound


def test_linear_init_is_uniform_over_the_whole_range():
    w = Linear(100, 400).weight.numpy()
    bound = 0.1
    assert w.min() < -0.95 * bound and w.max() > 0.95 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.02 * bound         # std of U(-b, b)
    assert abs(w.mean()) < 0.02 * bound


def test_embedding_init_standard_normal():
    w = Embedding(2000, 64).weight.numpy()
    assert abs(w.std() - 1.0) < 0.02 and abs(w.mean()) < 0.02
    assert abs(Embedding(2000, 64, std=0.1).weight.numpy().std() - 0.1) < 0.002


def test_layer_norm_init():
    ln = LayerNorm(6)
    np.testing.assert_array_equal(ln.weight.numpy(), np.ones(6))
    np.testing.assert_array_equal(ln.bias.numpy(), np.zeros(6))
    assert LayerNorm(6, bias=False).bias is None


def test_init_repeatable_with_manual_seed():
    minitx.manual_seed(7)
    a = Linear(3, 4)
    minitx.manual_seed(7)
    b = Linear(3, 4)
    np.testing.assert_array_equal(a.weight.numpy(), b.weight.numpy())
    np.testing.assert_array_equal(a.bias.numpy(), b.bias.numpy())
    assert backend.device_of(a.weight.data) == "cpu"
