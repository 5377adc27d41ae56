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
"""
from .function import no_grad


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


def backward(root, grad, retain_graph=False):
    """Accumulate d(root)/d(leaf) * grad into every leaf's ``.grad``."""
    from .tensor import Tensor

    pending = {id(root.creator): grad}  # node id -> gradient w.r.t. its output
    with no_grad():
        for fn in topological_order(root.creator):
            g_out = pending.pop(id(fn), None)
            if g_out is None:          # no gradient reached this node
                continue
            grads = fn.run_backward(g_out)
            for t, g in zip(fn.inputs, grads):
                if g is None or not t.requires_grad:
                    continue
                if t.creator is None:  # a leaf: accumulate into .grad
                    if t.grad is None:   # g may be shared or a broadcast view: keep a private copy
                        t.grad = Tensor._from_op(g.copy(), None)
                    else:
                        t.grad.data = t.grad.data + g
                else:
                    key = id(t.creator)
                    prev = pending.get(key)
                    pending[key] = g if prev is None else prev + g
            if not retain_graph:
                fn.release()
