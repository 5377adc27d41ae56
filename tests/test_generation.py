"""Generation: greedy and sampled decoding, EOS handling, the KV cache."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitx
from minitx import nn

V = 9


def model_on(device, **kw):
    minitx.manual_seed(1)
    opts = dict(dim=16, enc_num_tokens=V, enc_max_seq_len=6, dec_num_tokens=V, dec_max_seq_len=9,
                enc_depth=2, dec_depth=2, enc_heads=2, dec_heads=2, enc_dim_head=4, dec_dim_head=4)
    opts.update(kw)
    return nn.XTransformer(**opts).to(device)


@st.composite
def sources(draw):
    B = draw(st.integers(1, 4))
    S = draw(st.integers(1, 6))
    g = np.random.default_rng(draw(st.integers(0, 2**16)))
    src = g.integers(0, V, size=(B, S))
    mask = np.arange(S)[None, :] < g.integers(1, S + 1, size=B)[:, None]
    return src, mask


@given(sources(), st.integers(1, 3))
def test_cached_decoding_equals_uncached(device, data, t0):
    src, mask = data
    model = model_on(device)
    start = np.random.default_rng(0).integers(0, V, size=(len(src), t0))
    n = 9 - t0 + 1
    a = model.generate(src, start, n, mask=mask, temperature=0.0, use_cache=True)
    b = model.generate(src, start, n, mask=mask, temperature=0.0, use_cache=False)
    np.testing.assert_array_equal(minitx.backend.to_numpy(a), minitx.backend.to_numpy(b))
    assert a.shape == (len(src), n)


def test_cached_logits_equal_full_forward(device):
    """Beyond argmax agreement: the cached last-position logits equal a full forward's."""
    model = model_on(device).eval()
    g = np.random.default_rng(3)
    src, tgt = g.integers(0, V, size=(2, 5)), g.integers(0, V, size=(2, 7))
    net = model.decoder.net
    with minitx.no_grad():
        ctx = model.encode(src)
        full = net(tgt, context=ctx).numpy()
        cache = net.attn_layers.new_cache()
        steps = [net(tgt[:, i:i + 1], context=ctx, cache=cache).numpy() for i in range(7)]
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=1e-4, atol=1e-5)


def test_generate_restores_training_mode_and_records_no_graph(device):
    model = model_on(device)
    model.train()
    recorded = []
    model.decoder.net.to_logits.register_forward_hook(lambda m, args, out: recorded.append(out.requires_grad))
    out = model.generate(np.zeros((2, 3), int), np.ones((2, 1), int), 4, temperature=0.0)
    assert recorded and not any(recorded)                # every decoding step ran without a graph
    assert model.training and all(m.training for m in model.modules())
    model.eval()
    model.generate(np.zeros((2, 3), int), np.ones((2, 1), int), 4, temperature=0.0)
    assert not model.training
    assert out.dtype.kind == "i"


def test_eos_stops_rows_and_pads_after_it(device):
    model = model_on(device)
    src = np.random.default_rng(0).integers(0, V, size=(3, 4))
    start = np.ones((3, 1), int)
    free = minitx.backend.to_numpy(model.generate(src, start, 8, temperature=0.0))
    eos = int(free[0, 2])           # the token row 0 emits third: treat it as EOS
    out = minitx.backend.to_numpy(model.generate(src, start, 8, temperature=0.0, eos_token=eos))
    assert out.shape == (3, 8)
    for row, ref in zip(out, free):
        hits = np.flatnonzero(ref == eos)
        if len(hits):
            k = hits[0]
            np.testing.assert_array_equal(row[:k + 1], ref[:k + 1])
            assert (row[k + 1:] == 0).all()              # pad_value after EOS
        else:
            np.testing.assert_array_equal(row, ref)


def test_sampling_is_seeded_and_respects_top_k(device):
    model = model_on(device)
    src = np.random.default_rng(0).integers(0, V, size=(16, 4))
    start = np.ones((16, 1), int)
    minitx.manual_seed(5)
    a = minitx.backend.to_numpy(model.generate(src, start, 6, temperature=1.0))
    minitx.manual_seed(5)
    b = minitx.backend.to_numpy(model.generate(src, start, 6, temperature=1.0))
    np.testing.assert_array_equal(a, b)
    greedy = minitx.backend.to_numpy(model.generate(src, start, 6, temperature=0.0))
    k1 = minitx.backend.to_numpy(model.generate(src, start, 6, temperature=1.0, top_k=1))
    np.testing.assert_array_equal(k1, greedy)            # top_k=1 is greedy
    assert (a != greedy).any()                           # temperature 1 really samples
    logits = np.log(np.array([[0.4, 0.3, 0.2, 0.1]]))
    minitx.manual_seed(0)
    draws = {int(nn.sample(logits, 1.0, top_k=2)[0]) for _ in range(200)}
    assert draws == {0, 1}                               # only the two largest logits survive top_k=2


def test_top_p_keeps_the_smallest_nucleus():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    minitx.manual_seed(0)
    draws = {int(nn.sample(logits, 1.0, top_p=0.7)[0]) for _ in range(200)}
    assert draws == {0, 1}                               # 0.5 + 0.3 >= 0.7: tokens 2, 3 dropped
    draws = {int(nn.sample(logits, 1.0, top_p=0.4)[0]) for _ in range(50)}
    assert draws == {0}


def test_generate_rejects_too_long_requests(device):
    model = model_on(device)
    with pytest.raises(minitx.ShapeError, match="max_seq_len is 9"):
        model.generate(np.zeros((1, 3), int), np.ones((1, 1), int), 10)
