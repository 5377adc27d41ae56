"""The fused CUDA kernels agree with their NumPy reference paths (GPU only).

Each test runs one op on the CPU (the NumPy path) and on the GPU (the fused
kernel) on the same inputs, forward and backward, in float64 (tight
tolerances) and float32.  The gradient checks of the same ops run on the GPU
with the suite's switch (``pytest --device gpu``).
"""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minitx
from minitx import nn, optim
from minitx.testing import arrays, bool_masks

pytestmark = pytest.mark.gpu

DTYPES = [np.float64, np.float32]
TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=2e-4, atol=1e-4)}


def on_both(fn, inputs, dtype, upstream_seed=0):
    """Run ``fn`` on CPU and GPU copies of ``inputs`` (NumPy arrays; floats get gradients).

    Returns [(output, [input grads])] for cpu and gpu, as NumPy arrays; the
    backward pass uses the same random upstream gradient on both.
    """
    results = []
    for device in ("cpu", "gpu"):
        ts = [minitx.tensor(a.astype(dtype) if a.dtype.kind == "f" else a, device=device,
                            requires_grad=a.dtype.kind == "f") for a in inputs]
        out = fn(*ts)
        assert minitx.backend.device_of(out.data) == device         # the GPU run really ran there
        up = np.random.default_rng(upstream_seed).standard_normal(out.shape).astype(dtype)
        (out * minitx.tensor(up, device=device)).sum().backward()
        results.append((out.numpy(), [t.grad.numpy() for t in ts if t.requires_grad]))
    return results


def assert_same(results, dtype):
    """GPU equals CPU; float32 errors are judged against each array's magnitude."""
    (out_c, grads_c), (out_g, grads_g) = results
    for c, g in zip([out_c] + grads_c, [out_g] + grads_g):
        tol = dict(TOL[dtype])
        tol["atol"] = tol["atol"] * max(1.0, float(np.abs(c).max(initial=0.0)))
        np.testing.assert_allclose(g, c, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@given(x=arrays((3, 5), min_value=-6.0, max_value=6.0))
def test_gelu_kernel_matches_numpy(dtype, x):
    assert_same(on_both(minitx.gelu, [x], dtype), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@given(x=arrays((4, 6), min_value=-3.0, max_value=3.0), w=arrays((6,)), b=arrays((6,)))
def test_layer_norm_kernels_match_numpy(dtype, bias, x, w, b):
    # float32: rows of near-equal values divide rounding noise by a tiny std; both results are right
    assume(dtype == np.float64 or x.std(axis=1).min() > 0.05)
    if bias:
        fn, ins = (lambda x, w, b: minitx.layer_norm(x, w, b)), [x, w, b]
    else:
        fn, ins = (lambda x, w: minitx.layer_norm(x, w)), [x, w]
    assert_same(on_both(fn, ins, dtype), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@given(logits=arrays((5, 7), min_value=-8.0, max_value=8.0),
       target=st.lists(st.sampled_from([-100, 0, 3, 6]), min_size=5, max_size=5),
       smooth=st.sampled_from([0.0, 0.1]))
def test_cross_entropy_kernels_match_numpy(dtype, reduction, logits, target, smooth):
    t = np.array(target)
    res = []
    for device in ("cpu", "gpu"):
        z = minitx.tensor(logits.astype(dtype), device=device, requires_grad=True)
        out = minitx.cross_entropy(z, minitx.tensor(t, device=device), label_smoothing=smooth,
                                   reduction=reduction)
        out.sum().backward()
        res.append((out.numpy(), [z.grad.numpy()]))
    assert_same(res, dtype)


def test_cross_entropy_out_of_range_target_gives_nan_on_gpu():
    z = minitx.tensor(np.zeros((2, 3)), device="gpu")
    loss = minitx.cross_entropy(z, minitx.tensor(np.array([0, 7]), device="gpu"))
    assert np.isnan(loss.item())


@st.composite
def attention_problems(draw):
    B, T, H, E = draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 2)), draw(st.integers(1, 3))
    keep = draw(st.none() | bool_masks((B, 1, T, T)))
    return draw(arrays((B, T, 3 * H * E))), keep, H, E


@pytest.mark.parametrize("dtype", DTYPES)
@given(problem=attention_problems())
def test_attention_softmax_kernels_match_numpy(dtype, problem):
    qkv, keep, H, E = problem
    res = []
    for device in ("cpu", "gpu"):
        xp = minitx.backend.array_module(device)
        x = minitx.tensor(qkv.astype(dtype), device=device, requires_grad=True)
        out = minitx.scaled_dot_product_attention(x, heads=H, scale=E ** -0.5,
                                                  keep=None if keep is None else xp.asarray(keep))
        (out * out).sum().backward()
        res.append((out.numpy(), [x.grad.numpy()]))
    assert_same(res, dtype)


def test_attention_nan_scores_stay_nan_on_gpu():
    """A NaN in the scores must not turn into a clean row of zeros on the GPU."""
    qkv = np.random.default_rng(4).standard_normal((1, 3, 6))
    qkv[0, 1, 0] = np.nan                                # query 1 is NaN: its scores row is NaN
    outs = []
    for device in ("cpu", "gpu"):
        x = minitx.tensor(qkv, device=device)
        outs.append(minitx.scaled_dot_product_attention(x, heads=1, scale=0.5).numpy())
    np.testing.assert_array_equal(np.isnan(outs[1]), np.isnan(outs[0]))
    assert np.isnan(outs[1][0, 1]).all()


def test_attention_fully_masked_rows_are_zero_on_gpu():
    x = minitx.tensor(np.random.default_rng(0).standard_normal((1, 2, 6)), device="gpu", requires_grad=True)
    cp = minitx.backend.array_module("gpu")
    keep = cp.asarray(np.array([[[[True, False], [False, False]]]]))
    out = minitx.scaled_dot_product_attention(x, heads=1, scale=0.5, keep=keep)
    assert np.all(out.numpy()[0, 1] == 0)
    out.sum().backward()
    assert np.all(np.isfinite(x.grad.numpy()))


@pytest.mark.parametrize("cls", [optim.Adam, optim.AdamW])
@pytest.mark.parametrize("dtype", DTYPES)
def test_flat_adam_kernel_matches_numpy(cls, dtype):
    rng = np.random.default_rng(1)
    shapes = [(3, 4), (4,), (2, 2, 2)]
    init = [rng.standard_normal(s) for s in shapes]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(4)]
    finals = []
    for device in ("cpu", "gpu"):
        ps = [minitx.tensor(a.astype(dtype), device=device, requires_grad=True) for a in init]
        opt = cls(ps, lr=0.01, weight_decay=0.1)
        for k, gs in enumerate(grads):
            opt.param_groups[0]["lr"] = 0.01 / (k + 1)           # a schedule: lr changes every step
            for p, g in zip(ps, gs):
                p.grad = minitx.tensor(g.astype(dtype), device=device)
            opt.step()
        moment = minitx.backend.to_numpy(opt.state[id(ps[0])]["exp_avg_sq"])
        finals.append([p.numpy() for p in ps] + [moment])
        assert all(opt.state[id(p)]["step"] == 4 for p in ps)
        assert opt._flats                                   # the flat (fused-kernel) path ran
    for c, g in zip(*finals):
        np.testing.assert_allclose(g, c, **TOL[dtype])


def test_tf32_and_bf16_matmul_precision_stay_close():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((256, 512)).astype(np.float32), rng.standard_normal((512, 128)).astype(np.float32)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    ta, tb = minitx.tensor(a, device="gpu"), minitx.tensor(b, device="gpu")
    try:
        for precision, low, high in (("highest", 0.0, 1e-5), ("tf32", 1e-5, 5e-3), ("bf16", 1e-4, 3e-2)):
            minitx.backend.set_matmul_precision(precision)
            out = (ta @ tb).numpy()
            err = np.linalg.norm(out - exact) / np.linalg.norm(exact)
            assert low < err < high, (precision, err)       # the setting took effect, and is close
    finally:
        minitx.backend.set_matmul_precision("highest")


def test_training_step_makes_no_host_sync():
    cupyx = pytest.importorskip("cupyx")
    minitx.manual_seed(0)
    model = nn.XTransformer(dim=32, enc_num_tokens=11, enc_depth=1, enc_heads=2, enc_max_seq_len=6,
                            dec_num_tokens=11, dec_depth=1, dec_heads=2, dec_max_seq_len=8,
                            tie_token_emb=True).to("gpu")
    opt = optim.Adam(model.parameters(), lr=1e-3)
    cp = minitx.backend.array_module("gpu")
    src = cp.asarray(np.random.default_rng(0).integers(3, 11, (4, 6)))
    tgt = cp.asarray(np.random.default_rng(1).integers(3, 11, (4, 8)))
    mask = cp.ones((4, 6), dtype=bool)
    for _ in range(2):                          # the first step compiles kernels and lays out Adam
        with cupyx.allow_synchronize(False):
            opt.zero_grad()
            loss = model(src, tgt, mask=mask)
            loss.backward()
            optim.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
    assert np.isfinite(loss.item())
