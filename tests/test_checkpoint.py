"""Checkpoints: round trip, atomic writes, corruption detected, resume continues the run."""
import os

import numpy as np
import pytest

import minitx
from minitx import nn, optim


def small(device):
    minitx.manual_seed(0)
    return nn.XTransformer(dim=8, enc_num_tokens=6, enc_max_seq_len=4, dec_num_tokens=6, dec_max_seq_len=5,
                           enc_depth=1, dec_depth=1, enc_heads=2, dec_heads=2, enc_dim_head=4,
                           dec_dim_head=4).to(device)


def batch(g):
    return g.integers(0, 6, size=(3, 4)), g.integers(0, 6, size=(3, 5))


def train(model, opt, sched, g, steps):
    losses = []
    for _ in range(steps):
        src, tgt = batch(g)
        loss = model(src, tgt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


def test_save_load_round_trip(tmp_path, device):
    model = small(device)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    sched = optim.WarmupCosine(opt, 2, 10)
    train(model, opt, sched, np.random.default_rng(0), 3)
    path = tmp_path / "ck.npz"
    minitx.save_checkpoint(path, model, opt, sched, step=3, extra={"note": "hi"})
    other = small(device)
    for p in other.parameters():
        p.data[...] = 0
    opt2 = optim.Adam(other.parameters(), lr=1e-2)
    sched2 = optim.WarmupCosine(opt2, 2, 10)
    info = minitx.load_checkpoint(path, other, opt2, sched2)
    assert info == {"step": 3, "extra": {"note": "hi"}}
    for (n, a), (_, b) in zip(model.named_parameters(), other.named_parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=n)
    assert sched2.get_last_lr() == sched.get_last_lr()


def test_resume_continues_the_same_run(tmp_path, device):
    """5 + (save, load into fresh objects) + 5 steps == 10 straight steps, exactly."""
    def fresh():
        m = small(device)
        o = optim.AdamW(m.parameters(), lr=1e-2)
        return m, o, optim.WarmupCosine(o, 3, 10)

    m, o, s = fresh()
    straight = train(m, o, s, np.random.default_rng(7), 10)

    m, o, s = fresh()
    g = np.random.default_rng(7)
    first = train(m, o, s, g, 5)
    minitx.save_checkpoint(tmp_path / "c.npz", m, o, s, step=5, extra={"data": g.bit_generator.state})
    m, o, s = fresh()
    info = minitx.load_checkpoint(tmp_path / "c.npz", m, o, s)
    g = np.random.default_rng(0)
    g.bit_generator.state = info["extra"]["data"]
    second = train(m, o, s, g, 5)
    if device == "cpu":
        assert first + second == straight
    else:   # the GPU's atomic adds (embedding backward) sum in a varying order
        np.testing.assert_allclose(first + second, straight, rtol=1e-5)


def test_crash_mid_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, device):
    model = small(device)
    path = tmp_path / "ck.npz"
    minitx.save_checkpoint(path, model, step=1)
    before = path.read_bytes()

    def crash(*a, **k):
        raise KeyboardInterrupt("killed mid-save")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        minitx.save_checkpoint(path, model, step=2)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert minitx.load_checkpoint(path, small(device))["step"] == 1
    assert [f.name for f in tmp_path.iterdir()] == ["ck.npz"]       # no temp file left behind


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_damaged_checkpoint_is_detected(tmp_path, device, damage):
    path = tmp_path / "ck.npz"
    minitx.save_checkpoint(path, small(device))
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data = b"not a checkpoint at all"
    path.write_bytes(bytes(data))
    with pytest.raises(minitx.CheckpointError, match="corrupted|truncated|not a minitx"):
        minitx.load_checkpoint(path, small(device))


def test_checkpoint_of_another_model_is_refused(tmp_path, device):
    path = tmp_path / "ck.npz"
    minitx.save_checkpoint(path, small(device))
    minitx.manual_seed(0)
    bigger = nn.XTransformer(dim=16, enc_num_tokens=6, enc_max_seq_len=4, dec_num_tokens=6, dec_max_seq_len=5,
                             enc_depth=1, dec_depth=1).to(device)
    with pytest.raises(minitx.CheckpointError, match="does not match"):
        minitx.load_checkpoint(path, bigger)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(minitx.CheckpointError, match="does not exist"):
        minitx.load_checkpoint(tmp_path / "nope.npz", small("cpu"))


@pytest.mark.gpu
@pytest.mark.parametrize("saved_on, loaded_on", [("gpu", "cpu"), ("cpu", "gpu")])
def test_checkpoint_moves_between_devices(tmp_path, saved_on, loaded_on):
    """A checkpoint saved on one device loads on the other, and training goes on the same."""
    m = small(saved_on).to(dtype=np.float64)            # float64: the two devices agree closely
    o = optim.AdamW(m.parameters(), lr=1e-2)
    s = optim.WarmupCosine(o, 3, 10)
    train(m, o, s, np.random.default_rng(1), 3)
    minitx.save_checkpoint(tmp_path / "c.npz", m, o, s, step=3)
    m2 = small(loaded_on).to(dtype=np.float64)
    o2 = optim.AdamW(m2.parameters(), lr=1e-2)
    s2 = optim.WarmupCosine(o2, 3, 10)
    assert minitx.load_checkpoint(tmp_path / "c.npz", m2, o2, s2)["step"] == 3
    for (n, a), b in zip(m.named_parameters(), m2.parameters()):
        assert b.device == loaded_on
        np.testing.assert_array_equal(b.numpy(), a.numpy(), err_msg=n)
    first = train(m, o, s, np.random.default_rng(2), 2)
    second = train(m2, o2, s2, np.random.default_rng(2), 2)
    np.testing.assert_allclose(second, first, rtol=1e-9)      # Adam's moments and step came along
