"""The encoder-decoder: gradients of the whole model, masking, bad input, training."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitx
from minitx import nn

V = 7   # vocabulary of the tiny models


def load_example():
    """Import examples/reverse_copy.py by path (examples/ is not a package)."""
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "reverse_copy.py"
    spec = importlib.util.spec_from_file_location("reverse_copy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny(device, depth=1, dtype=None, **kw):
    minitx.manual_seed(0)
    opts = dict(dim=8, enc_num_tokens=V, enc_max_seq_len=5, dec_num_tokens=V, dec_max_seq_len=5,
                enc_depth=depth, dec_depth=depth, enc_heads=2, dec_heads=2, enc_dim_head=3,
                dec_dim_head=3, enc_ff_mult=2, dec_ff_mult=2, tie_token_emb=True)
    opts.update(kw)
    m = nn.XTransformer(**opts)
    if dtype is not None:
        m.to(dtype=dtype)
    return m.to(device)


@st.composite
def batches(draw, max_batch=3, max_src=5, max_tgt=6):
    B = draw(st.integers(1, max_batch))
    S = draw(st.integers(1, max_src))
    T = draw(st.integers(2, max_tgt))
    seed = draw(st.integers(0, 2**16))
    g = np.random.default_rng(seed)
    src = g.integers(0, V, size=(B, S))
    lens = g.integers(1, S + 1, size=B)
    mask = np.arange(S)[None, :] < lens[:, None]
    tgt = g.integers(0, V, size=(B, T))
    tgt[:, 1:][g.random((B, T - 1)) < 0.3] = -100          # some ignored labels
    return src, tgt, mask


@given(batches())
def test_whole_model_gradients_match_finite_differences(device, batch):
    src, tgt, mask = batch
    model = tiny(device, dtype=np.float64)
    params = model.parameters()
    minitx.directional_gradcheck(lambda *ps: model(src, tgt, mask=mask), *params, atol=1e-6)


def test_whole_model_elementwise_gradcheck(device):
    """Every element of every parameter of a 1-layer encoder-decoder, against finite differences."""
    model = tiny(device, dtype=np.float64)
    g = np.random.default_rng(1)
    src = g.integers(0, V, size=(2, 4))
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)
    tgt = g.integers(0, V, size=(2, 5))
    tgt[0, 3:] = -100
    minitx.gradcheck(lambda *ps: model(src, tgt, mask=mask), *model.parameters())


def test_padding_tokens_do_not_change_the_loss(device):
    model = tiny(device)
    g = np.random.default_rng(2)
    src = g.integers(0, V, size=(3, 5))
    mask = np.arange(5)[None, :] < np.array([2, 5, 3])[:, None]
    tgt = g.integers(0, V, size=(3, 5))
    loss = model(src, tgt, mask=mask).item()
    src2 = np.where(mask, src, g.integers(0, V, size=src.shape))   # new values under False
    assert not (src2 == src).all()
    assert model(src2, tgt, mask=mask).item() == pytest.approx(loss, rel=1e-6, abs=1e-6)
    # without the mask, the padding does matter: the test can fail
    assert model(src2, tgt).item() != pytest.approx(model(src, tgt).item(), rel=1e-6)


def test_tied_embedding_is_one_parameter(device):
    model = tiny(device)
    assert model.decoder.net.token_emb.weight is model.encoder.token_emb.weight
    names = [n for n, _ in model.named_parameters()]
    assert "encoder.token_emb.weight" in names
    assert not any(n.startswith("decoder.net.token_emb") for n in names)


def test_unknown_option_raises():
    with pytest.raises(TypeError, match="enc_dpeth"):
        nn.XTransformer(dim=8, enc_num_tokens=5, enc_max_seq_len=4, dec_num_tokens=5,
                        dec_max_seq_len=4, enc_dpeth=2)


@pytest.mark.parametrize("bad, err, words", [
    (dict(src=np.full((2, 4), 7)), minitx.InputError, "src holds token id 7"),
    (dict(src=np.full((2, 4), -1)), minitx.InputError, "src holds token id -1"),
    (dict(tgt=np.full((2, 5), 9)), minitx.InputError, "tgt holds token id 9"),
    (dict(mask=np.ones((2, 3), bool)), minitx.ShapeError, "mask has shape (2, 3)"),
    (dict(mask=np.ones((2, 4), int)), minitx.DTypeError, "mask must be boolean"),
    (dict(tgt=np.zeros((2, 7), int)), minitx.ShapeError, "max_seq_len is 5"),
    (dict(src=np.zeros((2, 6), int), mask=None), minitx.ShapeError, "max_seq_len 5"),
    (dict(src=np.zeros((2, 4))), minitx.DTypeError, "integer token ids"),
    (dict(tgt=np.zeros((2, 5))), minitx.DTypeError, "integer token ids"),
    (dict(tgt=np.zeros((3, 5), int)), minitx.ShapeError, "batch size"),
])
def test_bad_input_gets_a_clear_error(device, bad, err, words):
    model = tiny(device)
    args = dict(src=np.zeros((2, 4), int), tgt=np.zeros((2, 5), int), mask=np.ones((2, 4), bool))
    args.update(bad)
    with pytest.raises(err) as info:
        model(args["src"], args["tgt"], mask=args["mask"])
    assert words in str(info.value)


def test_cross_attention_token_dropout_keeps_only_real_tokens(device):
    minitx.manual_seed(3)
    xp = minitx.backend.array_module(device)
    enc = minitx.tensor(np.arange(2 * 6 * 1, dtype=float).reshape(2, 6, 1), device=device)
    mask = xp.asarray(np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], bool))
    kept, new_mask = nn.drop_context_tokens(enc, mask, 0.5)
    kept, new_mask = kept.numpy()[..., 0], minitx.backend.to_numpy(new_mask)
    assert kept.shape == (2, 3)
    assert new_mask.sum(1).tolist() == [2, 3]           # ceil(3 * .5), ceil(6 * .5)
    assert set(kept[0][new_mask[0]]) <= {0.0, 1.0, 2.0}  # never a padded token
    assert len(set(kept[1])) == 3
    assert set(kept[1]) <= set(range(6, 12))            # row 1 keeps its own tokens


def test_cross_attention_token_dropout_only_in_training(device):
    model = tiny(device, cross_attn_tokens_dropout=0.5)
    src = np.random.default_rng(0).integers(0, V, size=(2, 5))
    tgt = np.random.default_rng(1).integers(0, V, size=(2, 5))
    model.eval()
    a, b = model(src, tgt).item(), model(src, tgt).item()
    assert a == b
    model.train()
    losses = {round(model(src, tgt).item(), 6) for _ in range(6)}
    assert len(losses) > 1


@pytest.mark.slow
def test_tiny_model_learns_to_reverse(device):
    """A few hundred CPU steps take exact match far above chance."""
    rc = load_example()
    args = ["--device", device, "--steps", "300", "--seq-len", "6", "--symbols", "8", "--dim", "32",
            "--depth", "1", "--heads", "2", "--dim-head", "16", "--eval-every", "300",
            "--eval-size", "200", "--warmup", "30", "--log-every", "100"]
    minitx.manual_seed(0)
    opts = rc.parse_args(args)
    opts.min_len = 3
    model = rc.build_model(opts).to(device)
    opt = minitx.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    sched = minitx.optim.WarmupCosine(opt, warmup_steps=30, total_steps=300)
    g = np.random.default_rng(0)
    for _ in range(300):
        src, tgt, mask = rc.make_batch(g, 32, 6, 3, 8)
        loss = model(src, np.where(tgt == rc.PAD, -100, tgt), mask=mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    es, et, em = rc.make_batch(np.random.default_rng(99), 200, 6, 3, 8)
    acc, _, _ = rc.exact_match(model, es, et, em)
    assert acc > 0.5, acc     # chance is 8**-3 or less
