"""Regression tests: in-place changes through views, detach and saved outputs; grad dtypes;
enable_grad as a decorator; NaN-free ignored rows; x ** 0; token-dropout counts; cached masks."""
import math

import numpy as np
import pytest

import minitx
from minitx import nn


def test_enable_grad_decorator_turns_recording_on(device):
    @minitx.enable_grad()
    def inside():
        return minitx.is_grad_enabled()

    with minitx.no_grad():
        assert inside() is True
    assert minitx.is_grad_enabled()


def test_in_place_change_through_a_view_is_caught(device):
    w = minitx.tensor(np.ones(2), device=device, requires_grad=True)
    a = minitx.tensor(np.array([3.0, 4.0]), device=device)
    y = (w * a).sum()
    a.reshape(2).add_(100)                          # same memory as `a`, which Mul saved
    with pytest.raises(minitx.GraphError, match="modified in place"):
        y.backward()


def test_in_place_change_through_detach_is_caught(device):
    x = minitx.tensor(np.array([1.0, 2.0]), device=device, requires_grad=True)
    y = (x * x).sum()
    x.detach().add_(10)
    with pytest.raises(minitx.GraphError, match="modified in place"):
        y.backward()


def test_in_place_change_of_a_saved_output_is_caught(device):
    x = minitx.tensor(np.array([0.5, 1.0]), device=device, requires_grad=True)
    y = x.exp()
    with minitx.no_grad():
        y.mul_(0)
    with pytest.raises(minitx.GraphError, match="output of Exp"):
        y.sum().backward()


def test_float32_parameters_get_float32_gradients_from_mixed_ops(device):
    w = minitx.tensor(np.ones(3, dtype=np.float32), device=device, requires_grad=True)
    x = minitx.tensor(np.ones(3), device=device)     # float64
    (w * x).sum().backward()
    assert w.grad.dtype == np.float32


def test_layer_refuses_an_input_of_another_float_dtype(device):
    layer = nn.Linear(4, 3).to(device)
    with pytest.raises(minitx.DTypeError, match="float64 but the layer's parameters are float32"):
        layer(minitx.tensor(np.ones((2, 4)), device=device))


def test_cross_entropy_gradient_is_finite_with_nan_in_ignored_rows(device):
    logits = np.array([[1.0, 2.0, 3.0], [np.nan, 0.0, 0.0]])
    x = minitx.tensor(logits, device=device, requires_grad=True)
    minitx.cross_entropy(x, np.array([0, -100])).backward()
    g = x.grad.numpy()
    assert np.isfinite(g).all() and (g[1] == 0).all()


def test_pow_zero_has_zero_gradient_at_zero(device):
    x = minitx.tensor(np.array([0.0, 2.0]), device=device, requires_grad=True)
    (x ** 0).sum().backward()
    assert (x.grad.numpy() == 0).all()


@pytest.mark.parametrize("S, dropout", [(10, 0.7), (10, 0.75), (7, 0.5), (3, 0.1)])
def test_token_dropout_keeps_ceil_of_valid_times_keep(device, S, dropout):
    enc = minitx.tensor(np.zeros((1, S, 2)), device=device)
    xp = minitx.backend.array_module(device)
    kept, mask = nn.drop_context_tokens(enc, xp.ones((1, S), dtype=bool), dropout)
    keep = 1 - dropout
    assert int(minitx.backend.to_numpy(mask).sum()) == math.ceil(round(S * keep, 9))


@pytest.mark.parametrize("keys", [[True, True, True], [True, False, True]])
def test_cached_decoding_accepts_a_mask_over_every_key(device, keys):
    minitx.manual_seed(0)
    model = nn.XTransformer(dim=8, enc_num_tokens=5, enc_max_seq_len=3, dec_num_tokens=5, dec_max_seq_len=4,
                            enc_depth=1, dec_depth=1, enc_heads=1, dec_heads=1, enc_dim_head=4,
                            dec_dim_head=4).to(device).eval()
    net = model.decoder.net
    ctx = model.encode(np.zeros((1, 3), int))
    tokens = np.array([[1, 2, 3]])
    mask = np.array([keys])                         # a False key must be left out in both ways
    with minitx.no_grad():
        full = net(tokens, context=ctx, mask=mask).numpy()
        cache = net.attn_layers.new_cache()
        steps = [net(tokens[:, i:i + 1], context=ctx, mask=mask[:, :i + 1], cache=cache).numpy()
                 for i in range(3)]
    np.testing.assert_allclose(np.concatenate(steps, 1), full, rtol=1e-5, atol=1e-6)


def test_backward_seed_is_not_aliased(device):
    x = minitx.tensor(np.array([1.0, 2.0]), device=device, requires_grad=True)
    seed = minitx.backend.array_module(device).asarray([1.0, 1.0])
    x.backward(seed)
    seed[0] = 99
    assert x.grad.numpy()[0] == 1.0


def test_leaf_grad_never_shares_memory_with_the_seed():
    x = minitx.tensor(np.ones(3), requires_grad=True)
    for y in (x + 0.0, x.clone()):
        x.grad = None
        seed = np.arange(3.0)
        y.backward(seed)
        np.testing.assert_array_equal(x.grad.numpy(), seed)
        assert not np.shares_memory(x.grad.data, seed)


def test_new_data_on_a_detached_copy_leaves_the_original_alone():
    x = minitx.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    y = (x * x).sum()
    d = x.detach()
    d.data = np.zeros(3)                 # new memory for d; x's memory did not change
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0, 6.0])
    z = (x * x).sum()
    x.data = np.zeros(3)                 # new data for x itself still counts as a change
    with pytest.raises(minitx.GraphError, match="modified in place"):
        z.backward()


def test_only_real_views_share_the_version_counter():
    x = minitx.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    y = x * 1.0
    loss = (y * y).sum()
    copy = y[np.array([0, 1])]           # integer indexing copies
    view = y[0:2]                        # a slice is a view
    with minitx.no_grad():
        copy.add_(1.0)
    loss.backward(retain_graph=True)     # y's memory is untouched
    with minitx.no_grad():
        view.add_(1.0)
    with pytest.raises(minitx.GraphError, match="modified in place"):
        loss.backward()
