"""Reliability: bad input gets a clear minitx error, detect_anomaly finds the first NaN,
untrusted checkpoints are refused before anything is allocated, and the example's
training survives Ctrl-C, failed saves and non-finite steps, and is deterministic."""
import importlib.util
import io
import json
import os
import pathlib
import pickle
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import minitx
from minitx import nn

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "reverse_copy.py"
_spec = importlib.util.spec_from_file_location("reverse_copy_reliability", EXAMPLE)
rc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rc)


def tiny_model(device, **kw):
    minitx.manual_seed(0)
    return nn.XTransformer(dim=8, enc_num_tokens=6, enc_max_seq_len=4, dec_num_tokens=6, dec_max_seq_len=5,
                           enc_depth=1, dec_depth=1, enc_heads=2, dec_heads=2, enc_dim_head=4,
                           dec_dim_head=4, **kw).to(device)


@pytest.fixture(scope="module")
def model(device):
    return tiny_model(device)


SRC = np.array([[3, 4, 5, 1], [2, 2, 3, 0]])
TGT = np.array([[1, 5, 4, 3, 2], [1, 3, 2, 2, 2]])
MASK = np.array([[True, True, True, True], [True, True, True, False]])


def other(device):
    return "cpu" if device == "gpu" else "gpu"


# ----------------------------------------------------------------- layers
@pytest.mark.parametrize("make, x, err, fragment", [
    (lambda: nn.Linear(3, 4), np.ones((2, 5)), minitx.ShapeError, r"Linear\(in_features=3.*expected \(\.\.\., 3\)"),
    (lambda: nn.Linear(3, 4), np.ones(()), minitx.ShapeError, r"input has shape \(\), expected \(\.\.\., 3\)"),
    (lambda: nn.Linear(3, 4), np.ones((2, 3), dtype=np.int64), minitx.DTypeError, "must be floating point, got dtype int64"),
    (lambda: nn.LayerNorm(3), np.ones((2, 5)), minitx.ShapeError, r"LayerNorm\(3.*last axis must have size 3"),
    (lambda: nn.LayerNorm(3), np.ones(()), minitx.ShapeError, r"expected \(\.\.\., 3\)"),
    (lambda: nn.LayerNorm(3), np.ones((2, 3), dtype=bool), minitx.DTypeError, "floating point, got dtype bool"),
    (lambda: nn.Attention(4, heads=2, dim_head=2), np.ones((2, 3, 5)), minitx.ShapeError, r"\(\.\.\., 4\)"),
])
def test_layer_rejects_wrong_input(device, make, x, err, fragment):
    layer = make().to(device)
    with pytest.raises(err, match=fragment):
        layer(minitx.tensor(x, device=device))


def test_layer_rejects_a_raw_array(device):
    with pytest.raises(minitx.DTypeError, match="must be a minitx Tensor, got ndarray"):
        nn.Linear(3, 4).to(device)(np.ones((2, 3), np.float32))
    with pytest.raises(minitx.DTypeError, match="must be a minitx Tensor, got list"):
        nn.LayerNorm(3).to(device)([[1.0, 2.0, 3.0]])


@pytest.mark.parametrize("ids, err, fragment", [
    (np.array([0.0, 1.0]), minitx.DTypeError, "indices must be integers, got dtype float64"),
    (np.array([True, False]), minitx.DTypeError, "indices must be integers, got dtype bool"),
])
def test_embedding_rejects_non_integer_ids(device, ids, err, fragment):
    emb = nn.Embedding(5, 3).to(device)
    with pytest.raises(err, match=fragment):
        emb(ids)


def test_embedding_rejects_ids_outside_the_table(device):
    emb = nn.Embedding(5, 3).to(device)
    with pytest.raises(minitx.ShapeError, match=r"span \[-1, 7\] but the table has 5 rows"):
        emb(np.array([0, 7, -1]))                            # host ids are checked on every device
    with pytest.raises(minitx.ShapeError, match="ids cannot be read as an array"):
        emb([[1, 2], [3]])
    gpu_ids = minitx.tensor(np.array([0, 7]), device=device)
    with minitx.detect_anomaly(), pytest.raises(minitx.ShapeError, match="the table has 5 rows"):
        emb(gpu_ids)                                          # device ids: checked in anomaly mode


@pytest.mark.parametrize("make, fragment", [
    (lambda: nn.Linear(0, 3), "Linear: in_features must be a positive integer, got 0"),
    (lambda: nn.Linear(3, 2.5), "Linear: out_features must be a positive integer, got 2.5"),
    (lambda: nn.Embedding(-1, 3), "Embedding: num_embeddings must be a positive integer, got -1"),
    (lambda: nn.LayerNorm(None), "LayerNorm: dim must be a positive integer, got None"),
    (lambda: nn.Dropout(1.5), r"Dropout: p must be in \[0, 1\)"),
])
def test_layer_constructors_name_the_bad_argument(make, fragment):
    with pytest.raises(minitx.InputError, match=fragment):
        make()


def test_attention_rejects_a_2d_input(device):
    att = nn.Attention(4, heads=2, dim_head=2).to(device)
    with pytest.raises(minitx.ShapeError, match=r"\(batch, length, 4\)"):
        att(minitx.tensor(np.ones((3, 4)), device=device))


def test_attention_rejects_bad_masks_and_contexts(device):
    att = nn.Attention(4, heads=2, dim_head=2).to(device)
    x = minitx.tensor(np.ones((2, 3, 4), dtype=np.float32), device=device)
    with pytest.raises(minitx.DTypeError, match="mask must be a boolean array"):
        att(x, mask=np.ones((2, 3), dtype=int))
    with pytest.raises(minitx.ShapeError, match=r"mask has shape \(2, 4\), expected \(2, 3\)"):
        att(x, mask=np.ones((2, 4), dtype=bool))
    with pytest.raises(minitx.ShapeError, match=r"\(\.\.\., 4\)"):
        att(x, context=minitx.tensor(np.ones((2, 5, 6)), device=device))
    with pytest.raises(minitx.ShapeError):       # context batch 3 against x batch 2
        att(x, context=minitx.tensor(np.ones((3, 5, 4), dtype=np.float32), device=device))


# ------------------------------------------------------------------- ops
def test_op_failures_inside_numpy_become_minitx_errors_naming_the_op(device):
    a = minitx.tensor(np.ones((2, 3)), device=device)
    b = minitx.tensor(np.ones(4), device=device)
    with pytest.raises(minitx.ShapeError, match=r"Add: .*broadcast.*inputs: \(2, 3\) float64.*\(4,\) float64") as e:
        a + b
    assert e.value.__cause__ is not None                       # the NumPy error is kept as the cause
    with pytest.raises(minitx.ShapeError, match=r"Softmax: .*axis"):
        minitx.softmax(a, 5)
    with pytest.raises(minitx.MinitxError, match=r"Reshape: "):
        minitx.reshape(a, 1.5)
    with pytest.raises(minitx.DTypeError, match="input 0 must be a minitx Tensor, got ndarray"):
        minitx.softmax(np.ones(3))
    if device == "cpu":          # on the GPU, CuPy refuses a string already in the op's wrapper (see report)
        with pytest.raises(minitx.DTypeError, match="Add: "):
            a + "text"


def test_cross_entropy_rejects_bad_targets(device):
    logits = minitx.tensor(np.zeros((2, 3)), device=device)
    with pytest.raises(minitx.DTypeError, match="target must hold integer class ids, got dtype float64"):
        minitx.cross_entropy(logits, np.zeros(2))
    with pytest.raises(minitx.ShapeError, match=r"need target of shape \(2,\), got \(3,\)"):
        minitx.cross_entropy(logits, np.zeros(3, dtype=int))


def test_scalar_only_methods_say_why(device):
    t = minitx.tensor(np.ones(3), device=device)
    with pytest.raises(minitx.ShapeError, match=r"item\(\) needs a tensor with one element"):
        t.item()
    with pytest.raises(minitx.ShapeError, match="truth value"):
        bool(t)


@pytest.mark.gpu
def test_binary_op_across_devices_names_both(device):
    a = minitx.tensor(np.ones(3), device="cpu")
    b = minitx.tensor(np.ones(3), device="gpu")
    with pytest.raises(minitx.DeviceError, match=r"Add: .*different devices \(cpu, gpu\).*on gpu"):
        a + b
    with pytest.raises(minitx.DeviceError, match="different devices"):
        minitx.matmul(b, a)


@pytest.mark.gpu
def test_layer_parameters_on_another_device_than_the_input(device):
    lin = nn.Linear(3, 4).to("gpu")
    with pytest.raises(minitx.DeviceError, match="input is on cpu but the layer's parameters are on gpu"):
        lin(minitx.tensor(np.ones((2, 3), np.float32)))
    emb = nn.Embedding(5, 3)
    with pytest.raises(minitx.DeviceError, match="ids are on gpu but the table is on cpu"):
        emb(minitx.tensor(np.array([1, 2]), device="gpu"))


# ------------------------------------------------------------------ model
@pytest.mark.parametrize("src, tgt, mask, err, fragment", [
    (SRC.astype(float), TGT, MASK, minitx.DTypeError, "src must hold integer token ids, got dtype float64"),
    (SRC.astype(bool), TGT, MASK, minitx.DTypeError, "src must hold integer token ids, got dtype bool"),
    (SRC, TGT.astype(np.float32), MASK, minitx.DTypeError, "tgt must hold integer token ids"),
    (SRC[0], TGT, None, minitx.ShapeError, r"src must have shape \(batch, length\), got \(4,\)"),
    (SRC[None], TGT, None, minitx.ShapeError, r"src must have shape \(batch, length\), got \(1, 2, 4\)"),
    (SRC, TGT[0], MASK, minitx.ShapeError, r"tgt must have shape \(batch, length >= 2\)"),
    (SRC, TGT[:1], MASK, minitx.ShapeError, "src has batch size 2 but tgt has 1"),
    (SRC, TGT, MASK[:1], minitx.ShapeError, r"mask has shape \(1, 4\), expected \(2, 4\)"),
    (SRC, TGT, MASK.astype(int), minitx.DTypeError, "mask must be boolean"),
    (SRC[:, :0], TGT, None, minitx.ShapeError, "every row needs at least one token"),
    (-SRC, TGT, MASK, minitx.InputError, r"src holds token id -5, outside the vocabulary \[0, 6\)"),
    (SRC * 2**40, TGT, MASK, minitx.InputError, "outside the vocabulary"),
    (SRC, TGT + 10, MASK, minitx.InputError, "tgt holds token id 15"),
    (np.ones((2, 9), int), TGT, None, minitx.ShapeError, "longer than max_seq_len 4"),
    (SRC, np.ones((2, 9), int), MASK, minitx.ShapeError, "max_seq_len is 5"),
    ([[1, 2], [3]], TGT, None, minitx.ShapeError, "src cannot be read as an array"),
])
def test_model_rejects_bad_inputs(model, src, tgt, mask, err, fragment):
    with pytest.raises(err, match=fragment):
        model(src, tgt, mask=mask)


def test_model_accepts_other_integer_dtypes_and_lists(model):
    want = model(SRC.astype(np.int64), TGT.astype(np.int64), mask=MASK).item()
    assert np.isfinite(want)
    for cast in (np.int32, np.uint8, np.int16):
        assert model(SRC.astype(cast), TGT.astype(cast), mask=MASK).item() == want
    assert model(SRC.tolist(), TGT.tolist(), mask=MASK.tolist()).item() == want


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(seq_len=0), "seq_len .* must be an integer >= 1, got 0"),
    (dict(seq_len=-2), "got -2"),
    (dict(seq_len=2.5), "got 2.5"),
    (dict(temperature=-0.5), "temperature must be a finite number >= 0"),
    (dict(temperature=float("nan")), "temperature must be a finite number"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
    (dict(top_k=0), "top_k must be an integer >= 1"),
    (dict(top_k=2.5), "top_k must be an integer >= 1"),
    (dict(eos_token=6), r"eos_token must be a token id in \[0, 6\)"),
])
def test_generate_rejects_bad_arguments(model, kwargs, fragment):
    args = dict(seq_len=3)
    args.update(kwargs)
    seq_len = args.pop("seq_len")
    with pytest.raises(minitx.InputError, match=fragment):
        model.generate(SRC, np.ones((2, 1), int), seq_len, mask=MASK, **args)


def test_generate_rejects_bad_start_tokens(model):
    with pytest.raises(minitx.ShapeError, match="every row needs at least one token"):
        model.generate(SRC, np.ones((2, 0), int), 3)
    with pytest.raises(minitx.DTypeError, match="start_tokens must hold integer token ids"):
        model.generate(SRC, np.ones((2, 1)), 3)
    with pytest.raises(minitx.ShapeError, match="start_tokens has batch size 1 but src has 2"):
        model.generate(SRC, np.ones((1, 1), int), 3)


@pytest.mark.gpu
def test_gpu_token_ids_are_range_checked_in_anomaly_mode():
    m = tiny_model("gpu")
    cp = minitx.backend.array_module("gpu")
    with minitx.detect_anomaly(), pytest.raises(minitx.InputError, match="outside the vocabulary"):
        m(cp.asarray(SRC + 10), TGT, mask=MASK)


# --------------------------------------------------------- detect_anomaly
def test_anomaly_names_the_op_that_made_nan_in_forward(device):
    x = minitx.tensor(np.array([1.0, -1.0, 2.0]), device=device, requires_grad=True)
    assert not minitx.is_anomaly_enabled()
    y = minitx.log(x)                                      # off: NaN flows silently
    assert np.isnan(y.numpy()[1])
    with minitx.detect_anomaly():
        assert minitx.is_anomaly_enabled()
        with pytest.raises(minitx.AnomalyError, match=r"Log produced NaN in the forward pass") as e:
            minitx.log(x * 2.0)
    assert (e.value.op, e.value.phase) == ("Log", "forward")
    assert "log of zero or of a negative number" in str(e.value)
    assert "test_reliability.py" in str(e.value)           # points at the line that ran the op
    assert not minitx.is_anomaly_enabled()                 # restored on exit, even after an error


def test_anomaly_names_the_op_whose_gradient_went_non_finite(device):
    x = minitx.tensor(np.array([0.0, 4.0]), device=device, requires_grad=True)
    with minitx.detect_anomaly():
        y = (minitx.sqrt(x) * 3.0).sum()                   # forward is finite: sqrt(0) = 0
        with pytest.raises(minitx.AnomalyError, match=r"Sqrt's backward returned Inf .* backward pass") as e:
            y.backward()
    assert (e.value.op, e.value.phase) == ("Sqrt", "backward")
    assert "test_reliability.py" in str(e.value)           # the forward call site is remembered


def test_anomaly_says_when_the_nan_came_from_outside(device):
    x = minitx.tensor(np.array([1.0, np.nan]), device=device)
    with minitx.detect_anomaly(), pytest.raises(minitx.AnomalyError, match="input 0 already held non-finite"):
        x * 2.0


def test_anomaly_checks_the_seed_gradient(device):
    x = minitx.tensor(np.ones(2), device=device, requires_grad=True)
    with minitx.detect_anomaly():
        y = x * 2.0
        with pytest.raises(minitx.AnomalyError, match="gradient flowing into the output of Mul"):
            y.backward(np.array([1.0, np.inf]))


def test_anomaly_finds_nan_weights_in_a_model(device):
    m = tiny_model(device)
    with minitx.no_grad():
        m.decoder.net.to_logits.weight.data[0, 0] = np.nan
    with minitx.detect_anomaly(), pytest.raises(minitx.AnomalyError, match="already held non-finite") as e:
        m(SRC, TGT, mask=MASK)
    assert e.value.phase == "forward"


def test_anomaly_mode_as_decorator_and_nesting(device):
    @minitx.detect_anomaly()
    def f(x):
        return minitx.log(x)

    with pytest.raises(minitx.AnomalyError):
        f(minitx.tensor(np.array([-1.0]), device=device))
    with minitx.detect_anomaly():
        with minitx.detect_anomaly(enabled=False):
            assert not minitx.is_anomaly_enabled()
            minitx.log(minitx.tensor(np.array([-1.0]), device=device))   # off inside
        assert minitx.is_anomaly_enabled()


def test_anomaly_checks_cost_nothing_when_off(monkeypatch, device):
    from minitx.autograd import function

    def boom(*a, **k):
        raise AssertionError("anomaly check ran while off")
    monkeypatch.setattr(function, "check_forward", boom)
    monkeypatch.setattr(function, "check_backward", boom)
    m = tiny_model(device)
    m(SRC, TGT, mask=MASK).backward()
    assert minitx.AnomalyError is minitx.errors.AnomalyError and issubclass(minitx.AnomalyError, minitx.MinitxError)
    assert minitx.autograd.detect_anomaly is minitx.detect_anomaly


def test_a_finite_training_step_passes_anomaly_mode(device):
    m = tiny_model(device, dec_attn_dropout=0.1, dec_ff_dropout=0.1)
    with minitx.detect_anomaly():
        loss = m(SRC, TGT, mask=MASK)
        loss.backward()
    assert np.isfinite(loss.item())


# ------------------------------------------------------------ checkpoints
def _members(path):
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _write(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)


def _npy(array, allow_pickle=False):
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


@pytest.fixture
def saved(tmp_path):
    """A checkpoint whose weights differ from a fresh tiny_model's, so a skipped load shows."""
    path = tmp_path / "good.npz"
    model = tiny_model("cpu")
    for p in model.parameters():
        p.data[...] += 1.0
    minitx.save_checkpoint(path, model, step=3)
    return path


def _param_member(members):
    return next(n for n in members if n.startswith("model."))


@pytest.mark.parametrize("craft, fragment", [
    ("object_member", "has dtype object, not a plain numeric array"),
    ("object_param", "has dtype object"),
    ("pickle_member", "which is not a .npy array"),
    ("structured", "not a plain numeric array"),
    ("unicode", "not a plain numeric array"),
])
def test_untrusted_checkpoint_with_non_numeric_members_is_refused(tmp_path, saved, monkeypatch, craft, fragment):
    members = _members(saved)
    evil = {"object_member": {"evil.npy": _npy(np.array([{"x": 1}], dtype=object), allow_pickle=True)},
            "object_param": {_param_member(members): _npy(np.array([object()], dtype=object), allow_pickle=True)},
            "pickle_member": {"evil.pkl": pickle.dumps({"x": 1})},
            "structured": {"s.npy": _npy(np.zeros(2, dtype=[("a", "f4")]))},
            "unicode": {"u.npy": _npy(np.array(["text"]))}}[craft]
    path = tmp_path / "evil.npz"
    _write(path, {**members, **evil})
    for name in ("loads", "load"):                           # np.lib.format.read_array calls pickle.load
        monkeypatch.setattr(pickle, name, lambda *a, **k: pytest.fail("a checkpoint was unpickled"))
    with pytest.raises(minitx.CheckpointError, match=fragment):
        minitx.load_checkpoint(path, tiny_model("cpu"))


def test_declared_shapes_are_checked_before_any_array_is_read(tmp_path, saved, monkeypatch):
    members = _members(saved)
    path = tmp_path / "shape.npz"
    _write(path, {**members, _param_member(members): _npy(np.zeros((3, 3), np.float32))})
    reads = []
    real = np.lib.format.read_array
    monkeypatch.setattr(np.lib.format, "read_array", lambda f, **k: reads.append(1) or real(f, **k))
    model = tiny_model("cpu")
    before = [p.numpy().copy() for p in model.parameters()]
    with pytest.raises(minitx.CheckpointError, match=r"parameter .* has shape \(3, 3\) in the file but"):
        minitx.load_checkpoint(path, model)
    assert len(reads) == 1                                   # only the small JSON metadata was read
    assert all(np.array_equal(a, p.numpy()) for a, p in zip(before, model.parameters()))


def test_forged_huge_shape_is_refused_without_allocating(tmp_path, saved):
    members = _members(saved)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
    path = tmp_path / "huge.npz"
    _write(path, {**members, _param_member(members): header.getvalue() + bytes(16)})
    with pytest.raises(minitx.CheckpointError, match=r"declares shape \(1000000000000,\)"):
        minitx.load_checkpoint(path, tiny_model("cpu"))


def test_checkpoint_larger_than_the_model_allows_is_refused(tmp_path, saved):
    members = _members(saved)
    path = tmp_path / "bomb.npz"                             # 40 MB of zeros, compressed to ~40 kB
    _write(path, {**members, "bomb.npy": _npy(np.zeros(10_000_000, np.float32))}, zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 1_000_000
    with pytest.raises(minitx.CheckpointError, match="more than a checkpoint of this model can"):
        minitx.load_checkpoint(path, tiny_model("cpu"))
    assert minitx.checkpoint.default_max_bytes(tiny_model("cpu")) < 40_000_000


def test_malformed_metadata_is_refused_and_nothing_changes(tmp_path, saved):
    members = _members(saved)
    meta = json.loads(np.load(saved)["__meta__"].tobytes())
    meta["rng"] = {"bit_generator": "not a generator"}
    model = tiny_model("cpu")
    with minitx.no_grad():
        for p in model.parameters():
            p.data[...] = 7.0
    for name, payload in [("rng", json.dumps(meta).encode()), ("json", b"{not json"),
                          ("deep", b"[" * 100_000 + b"]" * 100_000), ("list", b"[1, 2]")]:
        path = tmp_path / f"{name}.npz"
        _write(path, {**members, "__meta__.npy": _npy(np.frombuffer(payload, np.uint8))})
        with pytest.raises(minitx.CheckpointError):
            minitx.load_checkpoint(path, model)
        assert all((p.numpy() == 7.0).all() for p in model.parameters()), name


def test_every_corrupted_byte_is_detected_or_harmless(tmp_path, saved):
    """Flip bytes all over the file: each load either fails with CheckpointError or gives the same weights."""
    reference = tiny_model("cpu")
    minitx.load_checkpoint(saved, reference)
    assert not np.array_equal(reference.parameters()[0].numpy(), tiny_model("cpu").parameters()[0].numpy())
    raw = saved.read_bytes()
    path = tmp_path / "flipped.npz"
    for i in range(0, len(raw), 61):
        data = bytearray(raw)
        data[i] ^= 0x5A
        path.write_bytes(bytes(data))
        m = tiny_model("cpu")
        try:
            minitx.load_checkpoint(path, m)
        except minitx.CheckpointError:
            continue
        for a, b in zip(reference.parameters(), m.parameters()):
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=f"byte {i} changed a weight silently")


@pytest.mark.parametrize("cut", [0, 10, 100, 1000, -200, -22, -1])
def test_truncated_checkpoint_is_detected(tmp_path, saved, cut):
    raw = saved.read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(raw[:cut] if cut else b"")
    with pytest.raises(minitx.CheckpointError, match="truncated|corrupted|not a minitx"):
        minitx.load_checkpoint(path, tiny_model("cpu"))


def test_disk_full_during_save_keeps_the_previous_checkpoint(tmp_path, saved, monkeypatch):
    before = saved.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        minitx.save_checkpoint(saved, tiny_model("cpu"), step=99)
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert minitx.load_checkpoint(saved, tiny_model("cpu"))["step"] == 3
    assert [f.name for f in tmp_path.iterdir()] == ["good.npz"]


# --------------------------------------------------------------- training
TINY = ["--seq-len", "4", "--symbols", "4", "--dim", "16", "--depth", "1", "--heads", "2", "--dim-head", "8",
        "--batch-size", "8", "--warmup", "3", "--eval-size", "20", "--target", "2", "--log-every", "1000"]


def run(device, *extra):
    return rc.train(rc.parse_args(TINY + ["--device", device] + [str(a) for a in extra]))


def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(tmp_path, device):
    """N straight steps vs N/2 + save + resume to N, with dropout on so the RNG state matters."""
    dropout = 0.2 if device == "cpu" else 0.0     # the GPU's dropout RNG is not checkpointed (README)
    common = ["--steps", 16, "--eval-every", 5, "--dropout", dropout]
    straight = run(device, *common)
    ck = tmp_path / "half.npz"
    first = run(device, *common, "--save", ck, "--stop-at", 8)
    assert first["step"] == 8 and first["exit_code"] == 0
    second = run(device, *common, "--save", ck, "--resume", ck)
    assert second["step"] == 16
    resumed = np.concatenate([first["losses"], second["losses"]])
    tol = 1e-6 if device == "cpu" else 1e-4
    np.testing.assert_allclose(resumed, straight["losses"], rtol=tol)
    np.testing.assert_allclose(second["final_loss"], straight["final_loss"], rtol=tol)


def test_same_seed_gives_bit_identical_losses(device):
    a = run(device, "--steps", 20, "--eval-every", 100, "--dropout", 0.1, "--seed", 3)
    b = run(device, "--steps", 20, "--eval-every", 100, "--dropout", 0.1, "--seed", 3)
    c = run(device, "--steps", 20, "--eval-every", 100, "--dropout", 0.1, "--seed", 4)
    assert len(a["losses"]) == 20 and np.isfinite(a["losses"]).all()
    if device == "cpu":
        assert np.array_equal(a["losses"], b["losses"])     # bit for bit
    else:                                                    # cuBLAS / atomics may reorder sums
        np.testing.assert_allclose(a["losses"], b["losses"], rtol=1e-4)
    assert not np.allclose(a["losses"], c["losses"])


@pytest.mark.parametrize("clip", [1.0, 0.0])
def test_skip_nonfinite_steps(monkeypatch, device, clip):
    build = rc.build_model

    def faulty_build(args):                     # poison the logits of training calls 3 and 5
        model = build(args)
        calls = []

        def hook(module, inputs, out):
            if module.training:
                calls.append(1)
                if len(calls) in (3, 5):
                    return out * float("nan")
        model.decoder.net.to_logits.register_forward_hook(hook)
        return model
    monkeypatch.setattr(rc, "build_model", faulty_build)
    res = run(device, "--steps", 8, "--eval-every", 100, "--clip", clip, "--skip-nonfinite")
    assert res["skipped"] == 2
    assert np.isnan(res["losses"][[2, 4]]).all() and np.isfinite(np.delete(res["losses"], [2, 4])).all()
    assert np.isfinite(res["final_loss"])
    bad = run(device, "--steps", 8, "--eval-every", 100, "--clip", clip)     # without the option: ruined
    assert not np.isfinite(bad["final_loss"])


def test_failed_save_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys, device):
    ck = tmp_path / "run.npz"
    real_replace, calls = os.replace, []

    def failing_replace(src, dst):
        calls.append(dst)
        if len(calls) > 1:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)
    monkeypatch.setattr(os, "replace", failing_replace)
    res = run(device, "--steps", 9, "--eval-every", 3, "--save", ck)
    monkeypatch.undo()
    assert res["step"] == 9 and res["save_failures"] == 2 and res["exit_code"] == 1
    assert "could not save" in capsys.readouterr().err
    assert minitx.load_checkpoint(ck, rc.build_model(rc.parse_args(TINY)))["step"] == 3
    assert [f.name for f in tmp_path.iterdir()] == ["run.npz"]          # no temp files left


def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path, device, capsys):
    ck = tmp_path / "ctrl_c.npz"
    args = TINY + ["--device", device, "--steps", "100000", "--eval-every", "100000", "--log-every", "1",
                   "--save", str(ck)]
    proc = subprocess.Popen([sys.executable, "-u", str(EXAMPLE)] + args, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        for line in proc.stdout:
            if line.startswith("step"):
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted at step" in out and f"continue with --resume {ck}" in out
    step = int(out.split("interrupted at step")[1].split()[0])
    assert step >= 1
    info = minitx.load_checkpoint(ck, rc.build_model(rc.parse_args(TINY)))
    assert info["step"] == step
    res = rc.train(rc.parse_args(args[:-4] + ["--steps", str(step + 3), "--eval-every", "1000", "--resume", str(ck)]))
    assert res["step"] == step + 3 and len(res["losses"]) == 3
    assert f"resumed from {ck} at step {step}" in capsys.readouterr().out


def test_example_reports_a_bad_checkpoint_without_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    assert rc.main(TINY + ["--steps", "4", "--resume", str(bad)]) == 2
    assert "error: checkpoint" in capsys.readouterr().err
