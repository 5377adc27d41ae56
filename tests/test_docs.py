"""docs/autograd.md stays true: its python blocks run in order in one namespace, each
```text output block matches what the python block before it printed, and
docs/encdec_step.dot is the graph that the document draws.

The document's code runs on the CPU whatever ``--device`` says (it is prose).
"""
import contextlib
import io
import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.M | re.S)


def blocks(text):
    """[(info string, body)] of every fenced block, in order."""
    return [(m.group(1).strip(), m.group(2)) for m in FENCE.finditer(text)]


def test_block_extraction():
    text = "x\n```python\na = 1\n```\n\n```text output\n1\n```\n```bash\nls\n```\n"
    assert blocks(text) == [("python", "a = 1\n"), ("text output", "1\n"), ("bash", "ls\n")]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Run the document; returns (namespace, [(python block index, printed, expected or None)])."""
    found = blocks((DOCS / "autograd.md").read_text())
    ns, results = {"__name__": "docs_autograd"}, []
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("docs"))                # nothing lands in the repo
        for i, (info, body) in enumerate(found):
            if info != "python":
                continue
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(body, f"docs/autograd.md (python block {i})", "exec"), ns)
            nxt = found[i + 1] if i + 1 < len(found) else None
            expected = nxt[1] if nxt is not None and nxt[0] == "text output" else None
            results.append((i, out.getvalue(), expected))
    return ns, results


def test_every_python_block_runs(executed):
    ns, results = executed
    assert len(results) >= 10
    assert "Softplus" in ns and "step_loss" in ns


def test_printed_output_matches_the_document(executed):
    _, results = executed
    checked = [(i, got, want) for i, got, want in results if want is not None]
    assert len(checked) >= 6
    for i, got, want in checked:
        assert got.rstrip() == want.rstrip(), f"block {i} printed:\n{got}"


def test_the_dot_file_is_the_graph_of_the_document(executed):
    ns, _ = executed
    assert (DOCS / "encdec_step.dot").read_text() == ns["dot"], \
        "regenerate: python examples/inspect_graph.py --depth 6 --out docs/encdec_step.dot " \
        "(also writes the PNG), and update the text output in docs/autograd.md section 6"
