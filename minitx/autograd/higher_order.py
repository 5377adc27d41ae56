"""Higher-order gradients: ``backward(create_graph=True)`` and ``grad(..., create_graph=True)``.

A normal backward pass works on raw arrays, so its result has no history.  With
``create_graph=True`` the engine instead calls each op's ``backward_graph(g)``,
which computes the same input gradients *with minitx ops on Tensors* while
graph recording is on.  The gradients then carry a graph of their own and can
be differentiated again::

    x = minitx.tensor([1.0, 2.0], requires_grad=True)
    (gx,) = grad((x ** 3).sum(), [x], create_graph=True)     # 3 x^2, with a graph
    (ggx,) = grad(gx.sum(), [x])                             # 6 x

``backward_graph`` sits right below ``backward`` in each op and mirrors it line
by line; values that ``forward`` saved as arrays are recomputed from
``self.inputs`` (Tensors) so that they, too, are differentiable.  An op without
``backward_graph`` raises GraphError naming it.
"""
from ..errors import GraphError
from .anomaly import AnomalyMode, check_backward
from .function import unbroadcast


def run_backward_graph(fn, g):
    """``Function.run_backward`` for create_graph: Tensor ``g`` in, differentiable Tensors out."""
    if fn.freed:
        raise GraphError(f"trying to backward through the graph a second time ({fn.name} was "
                         "already freed). Pass retain_graph=True to the first backward().")
    for i, (t, v) in enumerate(zip(fn.inputs, fn.versions)):   # backward_graph may read any input
        if t._version != v:
            raise GraphError(f"input {i} of {fn.name} (shape {t.shape}) was modified in place after "
                             f"the forward pass (version {v}, now {t._version}); create_graph needs "
                             "its old value. Use x.clone() before changing it.")
    grads = fn.backward_graph(g)
    if AnomalyMode.enabled:
        check_backward(fn, g.data, [None if x is None else x.data for x in grads])
    return tuple(None if x is None or not t.requires_grad else unbroadcast(x, t.shape)   # recorded sums
                 for x, t in zip(grads, fn.inputs))


def grad(output, inputs, grad_output=None, create_graph=False, retain_graph=None):
    """The gradients of ``output`` w.r.t. each of ``inputs``, as a list of Tensors.

    Unlike ``output.backward()`` it leaves every leaf's ``.grad`` as it was (a
    non-leaf marked with ``retain_grad()`` still receives its gradient).  An input
    that ``output`` does not depend on gets None.  ``create_graph=True`` gives
    gradients that can be differentiated again; ``retain_graph`` defaults to
    ``create_graph``.
    """
    from .engine import topological_order
    inputs = list(inputs)
    if output.creator is None:
        raise GraphError("grad(): output was not computed by recorded ops from tensors that require grad")
    retain = create_graph if retain_graph is None else retain_graph
    leaves = {id(t): t for fn in topological_order(output.creator) for t in fn.inputs
              if t.creator is None and t.requires_grad}
    leaves.update((id(t), t) for t in inputs if t.creator is None)
    saved = {k: t.grad for k, t in leaves.items()}
    captured, handles = {}, []
    for t in inputs:
        if t.creator is not None:                   # non-leaf: catch its gradient with a hook
            handles.append(t.register_hook(lambda g, k=id(t): captured.__setitem__(k, g)))
    try:
        for t in leaves.values():
            t.grad = None
        output.backward(grad_output, retain_graph=retain, create_graph=create_graph)
        return [t.grad if t.creator is None else captured.get(id(t)) for t in inputs]
    finally:
        for h in handles:
            h.remove()
        for k, t in leaves.items():
            t.grad = saved[k]
