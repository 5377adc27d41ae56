"""Tensor hooks and ``retain_grad``: seeing (and changing) gradients as backward computes them.

    h = x.register_hook(lambda g: print("dL/dx", g.shape))   # fires during backward
    y.retain_grad()                                         # keep dL/dy in y.grad
    loss.backward(); h.remove()

A tensor's hooks live in a ``TensorHooks`` object that exists only once a hook
or ``retain_grad`` is registered, so graphs without hooks pay nothing:

* on a non-leaf tensor, it is also stored on the node that made the tensor
  (``fn.output_hooks``); the engine calls it when that node's incoming gradient
  is complete, before running the node's backward;
* on a leaf, the engine sums the leaf's gradient over all its consumers first
  (``LeafHooks``; set up only when some leaf has hooks) and calls the hooks
  with the total, then accumulates the result into ``leaf.grad``.

Hooks run in backward order; a hook may return a replacement gradient.
"""
import weakref

from ..errors import GraphError

# id -> leaf Tensor that has hooks; the engine scans for them only when this is non-empty
hooked_leaves = weakref.WeakValueDictionary()


class TensorHooks:
    """The hooks of one tensor, and whether a non-leaf keeps its ``.grad``."""

    def __init__(self, tensor):
        self.hooks, self.retain = [], False
        self.tensor = weakref.ref(tensor)       # no cycle node -> output tensor -> node

    def fire(self, grad):
        """Run the hooks on ``grad`` (an array, or a Tensor under create_graph); returns the gradient to use."""
        from .tensor import Tensor
        is_array = not isinstance(grad, Tensor)
        g = Tensor._from_op(grad, None) if is_array else grad
        for hook in list(self.hooks):
            out = hook(g)
            if out is not None:
                if not isinstance(out, Tensor):
                    out = Tensor._from_op(g.xp.asarray(out, dtype=g.dtype), None)
                if out.shape != g.shape:
                    raise GraphError(f"a tensor hook returned a gradient of shape {out.shape}; "
                                     f"expected {g.shape}")
                g = out
        t = self.tensor()
        if self.retain and t is not None:       # retain_grad(): accumulate like a leaf's .grad
            if is_array:
                t.grad = Tensor._from_op(g.data.copy(), None) if t.grad is None \
                    else Tensor._from_op(t.grad.data + g.data, None)
            else:
                t.grad = g if t.grad is None else t.grad + g
        return g.data if is_array else g


class HookHandle:
    """Returned by ``register_hook``; ``remove()`` unregisters the hook."""

    def __init__(self, tensor, hook):
        self.tensor, self.hook = weakref.ref(tensor), hook

    def remove(self):
        """Unregister the hook (a second call does nothing)."""
        t = self.tensor()
        if t is None or t._hooks is None or self.hook not in t._hooks.hooks:
            return
        t._hooks.hooks.remove(self.hook)
        if not t._hooks.hooks and t.is_leaf:
            hooked_leaves.pop(id(t), None)


def _hooks_of(tensor, what):
    if not tensor.requires_grad:
        raise GraphError(f"{what} on a tensor that does not require grad: no gradient will reach it")
    if tensor._hooks is None:
        tensor._hooks = TensorHooks(tensor)
        if tensor.creator is not None:
            if tensor.creator.freed:
                raise GraphError(f"{what} on a tensor whose graph was already freed by backward()")
            tensor.creator.output_hooks = tensor._hooks
    return tensor._hooks


def register_hook(tensor, hook):
    """Implements ``Tensor.register_hook``; see there."""
    if not callable(hook):
        raise TypeError(f"register_hook needs a callable, got {type(hook).__name__}")
    h = _hooks_of(tensor, "register_hook")
    h.hooks.append(hook)
    if tensor.creator is None:
        hooked_leaves[id(tensor)] = tensor
    return HookHandle(tensor, hook)


def retain_grad(tensor):
    """Implements ``Tensor.retain_grad``; see there."""
    if tensor.creator is None:
        return                                  # a leaf keeps its .grad anyway
    _hooks_of(tensor, "retain_grad").retain = True


class LeafHooks:
    """Engine helper: sums the gradient of hooked leaves and fires their hooks once complete.

    ``remaining[id(leaf)]`` counts the (node, input) edges still to deliver a
    gradient to the leaf; at zero the hooks fire and ``.grad`` accumulates.
    """

    def __init__(self, order):
        self.remaining, self.sums, self.leaves = {}, {}, {}
        for fn in order:
            for t in fn.inputs:
                if t.creator is None and t._hooks is not None and t._hooks.hooks and t.requires_grad:
                    self.remaining[id(t)] = self.remaining.get(id(t), 0) + 1
                    self.leaves[id(t)] = t

    def add(self, leaf, g, accumulate):
        """Take gradient ``g`` for ``leaf``; returns False when ``leaf`` has no hooks."""
        key = id(leaf)
        if key not in self.remaining:
            return False
        prev = self.sums.get(key)
        self.sums[key] = g if prev is None else prev + g
        self.remaining[key] -= 1
        if self.remaining[key] == 0:
            accumulate(leaf, leaf._hooks.fire(self.sums.pop(key)))
        return True

    def flush(self, accumulate):
        """Fire leaves some of whose consumers received no gradient (after the loop)."""
        for key, g in list(self.sums.items()):
            leaf = self.leaves[key]
            accumulate(leaf, leaf._hooks.fire(g))
        self.sums.clear()
