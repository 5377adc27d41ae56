"""Reverse-mode differentiation: the heart of minitx, read this file first.

The graph is made of ``Function`` nodes; each node's ``inputs`` are Tensors, and
a Tensor made by an op points back to its node (``tensor.creator``).  Leaves
(parameters, inputs) have no creator.

``backward(root, grad)``:
1. sorts the nodes reachable from ``root`` so every node comes before the nodes
   that made its inputs (reverse topological order) -- iteratively, with an
   explicit stack, so a chain of 100,000 ops needs no recursion;
2. walks that order once, handing each node the sum of the gradients flowing
   into its output and passing the gradients it returns on to its inputs;
3. accumulates into ``leaf.grad`` for leaves that require a gradient;
4. frees each node once it is used, unless ``retain_graph=True``.

Tensor hooks (``hooks.py``) and ``create_graph=True`` (``higher_order.py``)
add nothing to this loop when they are not used but one test per node.
"""
from . import tensor as tensor_module   # circular (tensor.py imports engine): used at call time
from .function import Function, enable_grad, no_grad
from .higher_order import run_backward_graph
from .hooks import LeafHooks, hooked_leaves


def topological_order(root_fn):
    """Nodes reachable from ``root_fn``, each before every node it depends on."""
    order, visited = [], set()
    stack = [(root_fn, False)]
    while stack:
        fn, children_done = stack.pop()
        if children_done:          # all nodes below fn are already in `order`
            order.append(fn)
            continue
        if id(fn) in visited:
            continue
        visited.add(id(fn))
        stack.append((fn, True))
        for t in fn.inputs:
            child = t.creator
            if child is not None and id(child) not in visited:
                stack.append((child, False))
    order.reverse()                # outputs first, leaves' consumers last
    return order


def backward(root, grad, retain_graph=False, create_graph=False):
    """Accumulate d(root)/d(leaf) * grad into every leaf's ``.grad``.

    ``create_graph=True`` (see ``higher_order.py``): ``grad`` is a Tensor, the
    backward ops are recorded, and ``.grad`` holds Tensors that can be
    differentiated again; the graph is kept.
    """
    order = topological_order(root.creator)
    leaf_hooks = LeafHooks(order) if hooked_leaves else None   # only while some leaf has hooks
    run = run_backward_graph if create_graph else Function.run_backward
    keep = retain_graph or create_graph
    pending = {id(root.creator): grad}  # node id -> gradient w.r.t. its output
    handed = {id(grad)}                 # arrays a leaf's .grad must not keep: the caller's seed and
                                        # those already stored as some leaf's .grad

    def to_leaf(leaf, g):
        accumulate(leaf, g, handed)
    with enable_grad() if create_graph else no_grad():
        for fn in order:
            g_out = pending.pop(id(fn), None)
            if g_out is None:          # no gradient reached this node
                continue
            if fn.output_hooks is not None:   # register_hook / retain_grad on fn's output
                g_out = fn.output_hooks.fire(g_out)
            grads = run(fn, g_out)
            for t, g in zip(fn.inputs, grads):
                if g is None:          # run / run_backward_graph give None where no gradient is needed
                    continue
                if t.creator is None:  # a leaf: accumulate into .grad
                    if leaf_hooks is None or not leaf_hooks.add(t, g, to_leaf):
                        to_leaf(t, g)
                else:
                    key = id(t.creator)
                    prev = pending.get(key)
                    pending[key] = g if prev is None else prev + g
            if not keep:
                fn.release()
        if leaf_hooks is not None:
            leaf_hooks.flush(to_leaf)


def accumulate(leaf, g, handed):
    """``leaf.grad += g``; g is an array, or a Tensor (with its graph) under create_graph.

    The first gradient of a leaf is stored as is when it is a fresh array of its
    own (the usual case: a matmul's result), and copied when it is a view or
    read-only, the caller's seed, or already stored for another leaf (``handed``:
    Add returns one array for both inputs), so that no two ``.grad`` share memory
    and none shares the caller's array.
    """
    Tensor = tensor_module.Tensor
    if isinstance(g, Tensor):
        from .ops import clone
        leaf.grad = clone(g) if leaf.grad is None else leaf.grad + g   # clone: g may be shared
    elif leaf.grad is None:
        private = (g.flags.owndata and getattr(g.flags, "writeable", True)   # CuPy has no writeable flag
                   and id(g) not in handed)
        if not private:
            g = g.copy()
        handed.add(id(g))
        leaf.grad = Tensor._from_op(g, None)
    else:
        leaf.grad.data = leaf.grad.data + g
