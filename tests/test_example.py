"""examples/reverse_copy.py: runs, reports, checkpoints and resumes."""
import importlib.util
import pathlib

import numpy as np

PATH = pathlib.Path(__file__).resolve().parents[1] / "examples" / "reverse_copy.py"
spec = importlib.util.spec_from_file_location("reverse_copy", PATH)
rc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rc)

TINY = ["--steps", "40", "--seq-len", "4", "--symbols", "4", "--dim", "16", "--depth", "1", "--heads", "2",
        "--dim-head", "8", "--eval-every", "20", "--eval-size", "50", "--log-every", "10", "--warmup", "5"]


def test_batches_are_reversals():
    src, tgt, mask = rc.make_batch(np.random.default_rng(0), 20, 7, 2, 5)
    for s, t, m in zip(src, tgt, mask):
        n = int(m.sum())
        assert (s[~m] == rc.PAD).all() and (s[m] >= rc.SPECIAL).all()
        assert t[0] == rc.BOS and t[n + 1] == rc.EOS
        np.testing.assert_array_equal(t[1:n + 1], s[:n][::-1])
        assert (t[n + 2:] == rc.PAD).all()


def test_example_runs_and_prints_progress_and_summary(capsys, device):
    assert rc.main(TINY + ["--device", device]) == 0
    out = capsys.readouterr().out
    assert "tok/s" in out and "eta" in out
    assert "exact match" in out and "src" in out and "pred" in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("summary: steps 40") and "exact match" in last


def test_example_save_and_resume(tmp_path, capsys, device):
    ck = str(tmp_path / "run.npz")
    assert rc.main(TINY + ["--device", device, "--steps", "20", "--save", ck]) == 0
    assert rc.main(TINY + ["--device", device, "--resume", ck]) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "at step 20" in out
    assert "summary: steps 40" in out
