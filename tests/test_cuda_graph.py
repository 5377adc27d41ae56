"""CapturedStep: a replayed CUDA graph trains exactly like eager steps; clear errors otherwise."""
import numpy as np
import pytest

import minitx
from minitx import nn, optim
from minitx.cuda_graph import CapturedStep


def small_model(device, dtype=np.float64):
    minitx.manual_seed(0)
    model = nn.XTransformer(dim=32, enc_num_tokens=13, enc_depth=1, enc_heads=2, enc_max_seq_len=6,
                            dec_num_tokens=13, dec_depth=1, dec_heads=2, dec_max_seq_len=8,
                            tie_token_emb=True, pad_value=0, ignore_index=-100)
    return model.to(device, dtype=dtype)


def batches(n, xp):
    g = np.random.default_rng(0)
    out = []
    for _ in range(n):
        src = g.integers(3, 13, (4, 6))
        mask = np.arange(6)[None] < g.integers(3, 7, (4, 1))
        tgt = g.integers(3, 13, (4, 8))
        tgt[:, -1] = -100
        out.append(tuple(xp.asarray(a) for a in (np.where(mask, src, 0), tgt, mask)))
    return out


def make_step(model, opt, clip=None):
    def step(src, tgt, mask):
        opt.zero_grad()
        loss = model(src, tgt, mask=mask)
        loss.backward()
        if clip:
            optim.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        return loss
    return step


# ------------------------------------------------------------ errors (any machine)
def test_optimizers_that_cannot_be_captured_are_refused():
    p = minitx.tensor(np.ones(2), requires_grad=True)
    with pytest.raises(minitx.InputError, match="SGD cannot be captured"):
        CapturedStep(lambda: None, optimizers=[optim.SGD([p], lr=0.1)])
    with pytest.raises(minitx.InputError, match="warmup must be >= 1"):
        CapturedStep(lambda: None, optimizers=[], warmup=0)
    with pytest.raises(minitx.InputError, match="step_fn must be callable"):
        CapturedStep(None, optimizers=[])


def test_cpu_inputs_are_refused():
    step = CapturedStep(lambda x: x, optimizers=[])
    with pytest.raises(minitx.DeviceError, match="input 0 is not a GPU array"):
        step(np.ones(3))


def test_adam_refuses_a_step_it_cannot_capture():
    a, b = (minitx.tensor(np.ones(2), requires_grad=True) for _ in range(2))
    opt = optim.Adam([a, b], lr=0.1)
    a.grad = minitx.tensor(np.ones(2))                   # b has no gradient: no flat layout
    opt.capturing = True
    with pytest.raises(minitx.GraphError, match="cannot be updated inside a CUDA graph capture"):
        opt.step()
    opt.capturing = False
    opt.step()                                           # eager: the per-parameter path
    assert opt.state[id(a)]["step"] == 1


def test_adam_leaves_the_learning_rate_out_of_a_capture():
    """A write of lr recorded in the graph would undo every later schedule change."""
    p = minitx.tensor(np.ones(3), requires_grad=True)
    opt = optim.Adam([p], lr=0.1)
    p.grad = minitx.tensor(np.ones(3))
    opt.step()                                           # eager: lays out the flat buffers
    flat = opt._flats[0]
    assert list(flat.hyper) == [0.1, 1]
    opt.param_groups[0]["lr"] = 0.05
    opt.capturing = True
    p.grad = minitx.tensor(np.ones(3))
    opt.step()                                           # as if recorded: writes and counts nothing
    opt.capturing = False
    assert list(flat.hyper) == [0.1, 1] and opt.state[id(p)]["step"] == 1
    opt.before_replay()                                  # what CapturedStep does around a replay
    assert list(flat.hyper) == [0.05, 2]
    opt.after_replay()
    assert opt.state[id(p)]["step"] == 2


# ------------------------------------------------------------------------ GPU
@pytest.mark.gpu
@pytest.mark.parametrize("clip", [None, 0.5])
def test_replayed_steps_equal_eager_steps(clip):
    cp = minitx.backend.array_module("gpu")
    data = batches(7, cp)
    eager_model = small_model("gpu")
    eager_opt = optim.AdamW(eager_model.parameters(), lr=3e-3)
    eager_step = make_step(eager_model, eager_opt, clip)
    graph_model = small_model("gpu")
    graph_opt = optim.AdamW(graph_model.parameters(), lr=3e-3)
    captured = CapturedStep(make_step(graph_model, graph_opt, clip), optimizers=[graph_opt], warmup=2)
    for k, batch in enumerate(data):
        for opt in (eager_opt, graph_opt):                       # a schedule: lr changes each step
            opt.param_groups[0]["lr"] = 3e-3 / (1 + k)
        a = eager_step(*batch).item()
        b = captured(*batch).item()
        assert a == pytest.approx(b, rel=1e-9), k
    assert captured.graph is not None and captured.calls == 7
    for (n, p), q in zip(eager_model.named_parameters(), graph_model.parameters()):
        np.testing.assert_allclose(q.numpy(), p.numpy(), rtol=1e-8, atol=1e-10, err_msg=n)
    assert graph_opt.state[id(q)]["step"] == 7


@pytest.mark.gpu
def test_capture_checks_input_shapes():
    cp = minitx.backend.array_module("gpu")
    model = small_model("gpu", np.float32)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    captured = CapturedStep(make_step(model, opt), optimizers=[opt], warmup=1)
    data = batches(2, cp)
    for batch in data:
        captured(*batch)
    src, tgt, mask = data[0]
    with pytest.raises(minitx.ShapeError, match="pad every batch to one shape"):
        captured(src[:2], tgt[:2], mask[:2])


@pytest.mark.gpu
def test_captured_training_learns():
    cp = minitx.backend.array_module("gpu")
    model = small_model("gpu", np.float32)
    opt = optim.Adam(model.parameters(), lr=3e-3)
    captured = CapturedStep(make_step(model, opt), optimizers=[opt])
    batch = batches(1, cp)[0]
    first = captured(*batch).item()
    for _ in range(60):
        last = captured(*batch).item()
    assert last < 0.5 * first


class _FakeCuPy:
    """Just enough of CuPy's stream / graph / pool API to run CapturedStep's bookkeeping on
    NumPy: the "capture" runs the step eagerly and a "replay" runs nothing."""

    class _Stream:
        ptr = 1

        def __init__(self, non_blocking=False):
            self.capturing = False

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def synchronize(self):
            pass

        def begin_capture(self):
            self.capturing = True

        def end_capture(self):
            self.capturing = False
            return _FakeCuPy._Graph()

    class _Graph:
        launches = 0

        def launch(self, stream=None):
            type(self).launches += 1

    class _Pool:
        def malloc(self, size):
            raise AssertionError("not called by the fake")

        def free_all_blocks(self):
            pass

    def __init__(self):
        import contextlib
        from types import SimpleNamespace
        self.cuda = SimpleNamespace(Stream=self._Stream, MemoryPool=self._Pool,
                                    get_current_stream=lambda: self._Stream(),
                                    using_allocator=lambda malloc: contextlib.nullcontext())
        self.get_default_memory_pool = self._Pool


def test_capture_bookkeeping_counts_each_step_once(monkeypatch):
    """Warm-up, recording and replays each count one optimizer step; lr goes in before each replay."""
    monkeypatch.setattr(minitx.backend, "is_gpu_array", lambda a: True)
    monkeypatch.setattr(minitx.backend, "array_module", lambda device: _FakeCuPy())
    p = minitx.tensor(np.ones(3), requires_grad=True)
    opt = optim.Adam([p], lr=0.1)

    def step(x):
        opt.zero_grad()
        loss = (p * minitx.tensor(x)).sum()
        loss.backward()
        opt.step()
        return loss

    captured = CapturedStep(step, optimizers=[opt], warmup=2)
    _FakeCuPy._Graph.launches = 0
    for k in range(6):
        opt.param_groups[0]["lr"] = 0.1 / (k + 1)
        captured(np.full(3, float(k)))
        if k >= 2:                                       # recorded at k = 2, replayed after
            assert list(opt._flats[0].hyper) == [pytest.approx(0.1 / (k + 1)), k + 1]
        assert opt.state[id(p)]["step"] == k + 1
    assert captured.calls == 6 and _FakeCuPy._Graph.launches == 4   # the recorded call + 3 replays
    with pytest.raises(minitx.ShapeError, match="pad every batch to one shape"):
        captured(np.ones(4))
