"""Graph export (minitx/autograd/graph.py), module tracing (tracing.py) and examples/inspect_graph.py."""
import importlib.util
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitx
from minitx import nn
from minitx.autograd import graph

ROOT = pathlib.Path(__file__).resolve().parents[1]


def dot_nodes(dot):
    """{node id: label} of the node statements in DOT text."""
    return dict(re.findall(r'^\s*(n\d+) \[label="([^"]*)"', dot, re.M))


def dot_edges(dot):
    return re.findall(r"^\s*(n\d+) -> (n\d+)", dot, re.M)


def abc(T):
    a, b, c = (T(np.ones((2, 3)), grad=True) for _ in range(3))
    return a, b, c, (a * b + c).sum()


def test_dot_of_a_known_expression(T):
    a, b, c, loss = abc(T)
    dot = graph.to_dot(loss, params={"a": a, "b": b, "c": c})
    assert dot.startswith("digraph minitx {") and dot.rstrip().endswith("}")
    assert dot.count("{") == dot.count("}")
    nodes = dot_nodes(dot)
    labels = sorted(nodes.values())
    assert labels == sorted(["Sum\\n()", "Add\\n(2, 3)", "Mul\\n(2, 3)",
                             "a\\n(2, 3)", "b\\n(2, 3)", "c\\n(2, 3)"])
    by_label = {v.split("\\n")[0]: k for k, v in nodes.items()}
    edges = {(by_label_name(nodes, s), by_label_name(nodes, d)) for s, d in dot_edges(dot)}
    assert edges == {("a", "Mul"), ("b", "Mul"), ("Mul", "Add"), ("c", "Add"), ("Add", "Sum")}
    assert len(dot_edges(dot)) == 5
    assert "penwidth=2" in dot.split(by_label["Sum"] + " [")[1].split("\n")[0]    # the root stands out


def by_label_name(nodes, key):
    return nodes[key].split("\\n")[0]


def test_unnamed_leaves_and_constants(T):
    x = T(np.ones(3), grad=True)
    y = (x * 2.0).sum()
    nodes = dot_nodes(graph.to_dot(y))
    assert sorted(nodes.values()) == sorted(["Sum\\n()", "Mul\\n(3,)", "input\\n(3,)", "input\\n()"])
    assert 'style="dashed"' in graph.to_dot(y)       # the constant 2.0 does not require grad


def test_text_tree_of_a_known_expression(T):
    a, b, c, loss = abc(T)
    text = graph.to_text(loss, params={"a": a, "b": b})
    assert text == ("Sum ()\n"
                    "└── Add (2, 3)\n"
                    "    ├── Mul (2, 3)\n"
                    "    │   ├── a (2, 3)\n"
                    "    │   └── b (2, 3)\n"
                    "    └── input (2, 3)\n")


def test_text_tree_prints_a_shared_node_once(T):
    x = T(np.ones(2), grad=True)
    y = x * x
    text = graph.to_text((y + y.exp()).sum())
    assert text.count("Mul (2,)") == 2 and "[n2, above]" in text
    assert text.count("input (2,)") == 1          # y's subtree is not repeated


def test_parameter_names_from_a_module(device):
    lin = nn.Linear(3, 2).to(device)
    x = minitx.tensor(np.ones((4, 3), dtype=np.float32), device=device)
    text = graph.to_text(lin(x).sum(), params=lin)
    assert "weight (2, 3)" in text and "bias (2,)" in text and "input (4, 3)" in text
    assert "Linear (4, 2)" in text


@given(st.integers(1, 30))
def test_node_and_edge_counts_of_a_chain(n):
    x = minitx.tensor(np.ones(2), requires_grad=True)
    y = x
    for _ in range(n):
        y = y.tanh()
    dot = graph.to_dot(y)
    assert len(dot_nodes(dot)) == n + 1 and len(dot_edges(dot)) == n
    assert len(graph.to_text(y).splitlines()) == n + 1


def test_deep_graphs_need_no_recursion():
    x = minitx.tensor(np.ones(2), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0
    assert len(graph.to_text(y).splitlines()) == 5000 * 2 + 1   # Mul + constant per level, + x
    assert graph.to_dot(y).count("->") == 10000


def test_a_freed_graph_is_marked(T):
    x = T(np.ones(2), grad=True)
    y = (x * 2).sum()
    y.backward()
    assert "Sum (freed)" in graph.to_text(y)


def test_leaf_tensor_alone(T):
    x = T(np.ones(2), grad=True)
    assert graph.to_text(x) == "input (2,)\n"
    assert len(dot_nodes(graph.to_dot(x, params={"x": x}))) == 1


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` binary not installed")
def test_graphviz_parses_the_output(T, device):
    _, _, _, loss = abc(T)
    model, loss2 = tiny_step(device)
    for text in (graph.to_dot(loss), graph.to_dot(loss2, params=model, collapse_modules=True)):
        out = subprocess.run(["dot", "-Tsvg"], input=text.encode(), capture_output=True)
        assert out.returncode == 0, out.stderr.decode()


def test_render_without_graphviz_says_what_to_install(T, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", None)          # import graphviz -> ImportError
    with pytest.raises(ImportError, match="pip install graphviz"):
        graph.render(graph.to_dot(abc(T)[3]), str(tmp_path / "g.png"))


def test_render_with_graphviz(T, tmp_path):
    pytest.importorskip("graphviz")
    if shutil.which("dot") is None:
        pytest.skip("Graphviz `dot` binary not installed")
    path = graph.render(graph.to_dot(abc(T)[3]), str(tmp_path / "g.png"))
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ tracing
def tiny_step(device, layers=1):
    minitx.manual_seed(0)
    model = nn.XTransformer(dim=16, tie_token_emb=True, enc_num_tokens=10, dec_num_tokens=10,
                            enc_max_seq_len=5, dec_max_seq_len=5, enc_depth=layers, dec_depth=layers,
                            enc_heads=2, dec_heads=2, enc_dim_head=8, dec_dim_head=8).to(device)
    src = np.array([[3, 4, 5, 6, 7], [8, 9, 3, 0, 0]])
    tgt = np.array([[1, 7, 6, 5, 4, 3], [1, 3, 9, 8, 2, 0]])
    with graph.trace(model):
        loss = model(src, tgt, mask=src != 0)
    return model, loss


def test_trace_records_scopes_only_inside_and_removes_its_hooks(device):
    model, loss = tiny_step(device)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    scopes = [fn.scope for fn in minitx.autograd.engine.topological_order(loss.creator)]
    assert all(scopes)
    assert scopes[0][-1][:2] == ("decoder", "AutoregressiveWrapper")       # the loss: made in decoder
    names = {frame[0] for s in scopes for frame in s}
    assert "decoder.net.attn_layers.layers.0.cross_attn" in names
    assert "decoder.net.token_emb" in names         # the tied embedding, named under its caller
    outside = model(np.array([[3, 4]]), np.array([[1, 2, 3]]))
    assert not hasattr(outside.creator, "scope")
    assert minitx.autograd.function.NodeHook.on_record is None


def test_collapse_modules_on_a_tiny_xtransformer(device):
    model, loss = tiny_step(device)
    full = dot_nodes(graph.to_dot(loss, params=model))
    collapsed_dot = graph.to_dot(loss, params=model, collapse_modules=True, collapse_depth=2)
    collapsed = dot_nodes(collapsed_dot)
    # <= 10 module and op nodes, + 2 on the CPU: the encoder skips the padded source positions
    # (TakeRows/PutRows and their reshapes at the XTransformer's own level)
    assert len(full) > 60 and len(collapsed) <= (10 if device == "gpu" else 12)
    labels = " ".join(collapsed.values())
    for name in ("decoder.net: TransformerWrapper", "encoder.attn_layers: Encoder",
                 "encoder.token_emb: Embedding", "CrossEntropy"):
        assert name in labels
    tied = [k for k, v in collapsed.items() if v.startswith("encoder.token_emb.weight")]
    assert len(tied) == 1 and sum(s == tied[0] for s, _ in dot_edges(collapsed_dot)) == 2   # used twice
    counts = [len(dot_nodes(graph.to_dot(loss, params=model, collapse_modules=True, collapse_depth=d)))
              for d in (1, 2, 4, 6)]
    assert counts == sorted(counts) and counts[-1] < len(full)
    text = graph.to_text(loss, params=model, collapse_modules=True, collapse_depth=2)
    assert text.splitlines()[0] == "CrossEntropy ()" and "24 ops, 18 params" in text


def test_collapsed_graph_has_no_cycles(device):
    model, loss = tiny_step(device, layers=2)
    dot = graph.to_dot(loss, params=model, collapse_modules=True, collapse_depth=6)
    succ = {}
    for s, d in dot_edges(dot):
        succ.setdefault(s, []).append(d)
    state = {}

    def visit(n):                                   # depth is small here: recursion is fine
        state[n] = 1
        for m in succ.get(n, []):
            assert state.get(m) != 1, "cycle"
            if m not in state:
                visit(m)
        state[n] = 2
    for n in list(succ):
        if n not in state:
            visit(n)


def test_collapse_needs_a_traced_graph(T):
    with pytest.raises(ValueError, match="graph.trace"):
        graph.to_dot(abc(T)[3], collapse_modules=True)


def test_trace_restores_state_after_an_exception(device):
    model, _ = tiny_step(device)
    with pytest.raises(minitx.MinitxError):
        with graph.trace(model):
            model(np.array([[3, 99]]), np.array([[1, 2, 3]]))              # token 99 out of range
    assert minitx.autograd.function.NodeHook.on_record is None
    assert all(not m._forward_pre_hooks for m in model.modules())


# ------------------------------------------------------------------ example
def test_inspect_graph_example(tmp_path, capsys, device):
    path = ROOT / "examples" / "inspect_graph.py"
    spec = importlib.util.spec_from_file_location("inspect_graph", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out_file = tmp_path / "step.dot"
    assert mod.main(["--out", str(out_file), "--device", device]) == 0
    dot = out_file.read_text()
    assert dot.startswith("digraph") and "decoder.net: TransformerWrapper" in dot
    out = capsys.readouterr().out
    assert "CrossEntropy ()" in out and "└── " in out
    model = mod.build(1, "cpu", 0)[0]
    for name, _ in model.named_parameters():
        assert re.search(rf"^  {re.escape(name)} .* \d\.\d{{4}}e[+-]\d\d$", out, re.M), name
