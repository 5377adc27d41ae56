"""Seeing the graph behind a tensor: Graphviz DOT text, a text tree, module-level views.

    from minitx.autograd import graph
    loss = (a * b + c).sum()
    print(graph.to_text(loss))          # an indented tree, loss at the top
    dot = graph.to_dot(loss)            # DOT text: paste into any Graphviz viewer
    graph.render(dot, "loss.png")       # needs `pip install graphviz` and the `dot` binary

Ops are nodes labelled with the Function's name and output shape; leaves are
labelled with their parameter name (``params``: a Module or {name: Tensor}),
their ``.name``, or "input"; edges point along the data flow (input -> op).

For a model, record which module made each node with ``trace`` and collapse:

    with graph.trace(model):
        loss = model(src, tgt, mask=mask)
    print(graph.to_text(loss, params=model, collapse_modules=True, collapse_depth=2))

Every module call at dotted depth <= ``collapse_depth`` (``encoder`` is 1,
``encoder.attn_layers`` is 2) with no such call inside it becomes one node
holding all the ops made inside it (ops of the calls around it, such as a
block's residual adds, stay visible); parameters used only inside one such
node are folded into it.  Export
before ``backward()`` (which frees the graph) or pass ``retain_graph=True``.
"""
from ..errors import InputError
from .tracing import trace

__all__ = ["to_dot", "to_text", "render", "trace"]


def _shape(shape):
    return "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def _count(n, word):
    return f"{n} {word}" + ("s" if n != 1 else "")


def _param_names(params):
    if params is None:
        return {}
    items = params.named_parameters() if hasattr(params, "named_parameters") else params.items()
    return {id(t): name for name, t in items}


class _Graph:
    """Nodes {key: [title, detail, kind]} and edges {(src, dst): [shapes]}, root key first."""

    def __init__(self):
        self.nodes, self.edges, self.root = {}, {}, None

    def edge(self, src, dst, shape):
        shapes = self.edges.setdefault((src, dst), [])
        if shape not in shapes:
            shapes.append(shape)


def _walk(tensor):
    """Every op node and leaf behind ``tensor``: (ops, leaves, out_shape, edges (src, dst, shape))."""
    ops, leaves, out_shape, edges = {}, {}, {}, []
    if tensor.creator is None:
        leaves[id(tensor)] = tensor
        return ops, leaves, out_shape, edges
    ops[id(tensor.creator)] = tensor.creator
    out_shape[id(tensor.creator)] = tensor.shape
    stack = [tensor.creator]
    while stack:                                   # iterative: deep graphs need no recursion
        fn = stack.pop()
        for t in fn.inputs:
            if t.creator is None:
                leaves[id(t)] = t
                edges.append((("leaf", id(t)), ("op", id(fn)), t.shape))
                continue
            edges.append((("op", id(t.creator)), ("op", id(fn)), t.shape))
            if id(t.creator) not in ops:
                ops[id(t.creator)] = t.creator
                out_shape[id(t.creator)] = t.shape
                stack.append(t.creator)
    return ops, leaves, out_shape, edges


def _groups(ops, depth):
    """{op id: frame of the module call it collapses into, or None to show the op itself}.

    Calls at dotted depth <= ``depth`` collapse, except those with such a call
    inside them ("split": their own ops, e.g. residual adds, stay visible).
    An op goes to the outermost call on its stack that is not split, so
    groups never nest and the picture has no cycles.
    """
    split = set()
    for fn in ops.values():
        near = [f[2] for f in getattr(fn, "scope", ()) if f[0] and f[0].count(".") + 1 <= depth]
        split.update(near[:-1])                          # they hold a collapsible call
    groups = {}
    for i, fn in ops.items():
        groups[i] = next((f for f in getattr(fn, "scope", ()) if f[0] and f[2] not in split), None)
    return groups


def build(tensor, params=None, collapse_modules=False, collapse_depth=2):
    """The graph behind ``tensor`` as a ``_Graph`` (shared by ``to_dot`` and ``to_text``)."""
    names = _param_names(params)
    ops, leaves, out_shape, edges = _walk(tensor)
    g = _Graph()
    key_of, groups = {}, {}
    frames = _groups(ops, collapse_depth) if collapse_modules else {}
    if collapse_modules and ops and not any(hasattr(fn, "scope") for fn in ops.values()):
        raise InputError("collapse_modules=True needs a graph recorded inside `with graph.trace(model):`")
    for i, fn in ops.items():
        frame = frames.get(i)
        if frame is None:
            key_of[("op", i)] = ("op", i)
            g.nodes[("op", i)] = [fn.name + (" (freed)" if fn.freed else ""), _shape(out_shape[i]), "op"]
        else:
            key = ("group", frame[2])
            key_of[("op", i)] = key
            groups.setdefault(key, [f"{frame[0]}: {frame[1]}", 0, 0])[1] += 1
    consumers = {}
    for src, dst, _ in edges:
        if src[0] == "leaf":
            consumers.setdefault(src, set()).add(key_of[dst])
    for i, t in leaves.items():
        key = ("leaf", i)
        owners = consumers.get(key, set())
        owner = next(iter(owners)) if len(owners) == 1 else ("op",)
        if owner[0] == "group" and (i in names or not t.requires_grad):   # used inside one module only
            key_of[key] = next(iter(owners))
            groups[key_of[key]][2] += i in names
            continue
        key_of[key] = key
        label = names.get(i) or getattr(t, "name", None) or "input"
        g.nodes[key] = [label, _shape(t.shape), "leaf" if t.requires_grad else "const"]
    for key, (title, n_ops, n_params) in groups.items():
        detail = _count(n_ops, "op") + (", " + _count(n_params, "param") if n_params else "")
        g.nodes[key] = [title, detail, "group"]
    for src, dst, shape in edges:
        s, d = key_of[src], key_of[dst]
        if s != d:
            g.edge(s, d, _shape(shape))
    g.root = key_of[("op", id(tensor.creator))] if tensor.creator is not None else ("leaf", id(tensor))
    return g


_STYLE = {"op": 'shape=box, style="rounded,filled", fillcolor="#dbe9f6"',
          "leaf": 'shape=ellipse, style=filled, fillcolor="#fdf1c7"',
          "const": 'shape=ellipse, style="dashed"',
          "group": 'shape=box3d, style=filled, fillcolor="#d9f0d3"'}


def _quote(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(tensor, params=None, collapse_modules=False, collapse_depth=2):
    """DOT text (``digraph``) of the graph behind ``tensor``; see the module docstring."""
    g = build(tensor, params, collapse_modules, collapse_depth)
    ids = {key: f"n{k}" for k, key in enumerate(g.nodes)}
    lines = ["digraph minitx {", "  rankdir=TB;",
             '  node [fontname="Helvetica", fontsize=10];', '  edge [fontname="Helvetica", fontsize=9];']
    for key, (title, detail, kind) in g.nodes.items():
        extra = ", penwidth=2" if key == g.root else ""
        lines.append(f"  {ids[key]} [label={_quote(title + chr(10) + detail)}, {_STYLE[kind]}{extra}];")
    for (src, dst), shapes in g.edges.items():
        label = f" [label={_quote(' '.join(shapes))}]" if collapse_modules else ""
        lines.append(f"  {ids[src]} -> {ids[dst]}{label};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_text(tensor, params=None, collapse_modules=False, collapse_depth=2):
    """An indented tree of the graph behind ``tensor``, output at the top, inputs below.

    A node reached a second time is printed once more as ``... [n3, above]``.
    """
    g = build(tensor, params, collapse_modules, collapse_depth)
    inputs, uses = {}, {}
    for src, dst in g.edges:
        inputs.setdefault(dst, []).append(src)
        uses[src] = uses.get(src, 0) + 1
    tags = {key: f"n{k}" for k, key in enumerate(g.nodes)}
    lines, printed = [], set()
    stack = [(g.root, "", "", "")]                 # (key, prefix for this line, branch, prefix below)
    while stack:
        key, prefix, branch, below = stack.pop()
        title, detail, kind = g.nodes[key]
        line = f"{prefix}{branch}{title} {detail}"
        has_inputs = bool(inputs.get(key))
        if has_inputs and key in printed:
            lines.append(f"{line}  [{tags[key]}, above]")
            continue
        lines.append(line + (f"  [{tags[key]}]" if has_inputs and uses.get(key, 0) > 1 else ""))
        printed.add(key)
        children = inputs.get(key, [])
        for k, child in reversed(list(enumerate(children))):
            last = k == len(children) - 1
            stack.append((child, below, "└── " if last else "├── ", below + ("    " if last else "│   ")))
    return "\n".join(lines) + "\n"


def render(dot, path, format="png"):
    """Write DOT text ``dot`` as an image to ``path`` with the optional ``graphviz`` package.

    Raises ImportError when the package is missing (``pip install graphviz``,
    or ``pip install minitx[graph]``); Graphviz's ``dot`` binary must be on PATH too.
    """
    try:
        import graphviz
    except ImportError:
        raise ImportError("graph.render needs the graphviz Python package: pip install graphviz "
                          "(or pip install 'minitx[graph]'), and the Graphviz `dot` binary "
                          "(e.g. apt install graphviz / brew install graphviz). The DOT text "
                          "itself needs nothing: paste it into any Graphviz viewer.") from None
    try:
        data = graphviz.Source(dot).pipe(format=format)
    except graphviz.ExecutableNotFound as e:
        raise RuntimeError("graph.render: the Graphviz `dot` binary is not on PATH; install "
                           "Graphviz (apt install graphviz / brew install graphviz)") from e
    with open(path, "wb") as f:
        f.write(data)
    return path
