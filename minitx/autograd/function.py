"""The ``Function`` base class: how one op records itself in the graph.

An op is a subclass with two methods on raw arrays:

* ``forward(self, *arrays, **params)`` computes the output array and keeps on
  ``self`` whatever ``backward`` will need;
* ``backward(self, grad)`` receives dLoss/dOutput and returns one gradient per
  input (``None`` for an input that needs none).

``Function.apply(*tensors, **params)`` runs ``forward`` and, when gradients are
wanted, links the output Tensor to this node.  The base class also undoes
broadcasting (an input of shape (1, D) added to a (B, D) array receives its
gradient summed over B), so no op has to.
"""
from ..backend import get_array_module
from ..errors import GraphError, op_input_error
from .anomaly import AnomalyMode, check_backward, check_forward


class _GradMode:
    enabled = True


def is_grad_enabled():
    """True unless inside a ``no_grad()`` block."""
    return _GradMode.enabled


class no_grad:
    """Context manager (and decorator) that stops graph recording.

    Inside it, ops still compute their outputs but record nothing, so no memory
    is kept for backward: use it for evaluation, generation and optimizer steps.
    """

    def __enter__(self):
        self.prev = _GradMode.enabled
        _GradMode.enabled = False

    def __exit__(self, *exc):
        _GradMode.enabled = self.prev

    def __call__(self, func):
        def wrapper(*args, **kwargs):
            with type(self)():                # no_grad() or enable_grad()
                return func(*args, **kwargs)
        wrapper.__name__, wrapper.__doc__ = func.__name__, func.__doc__
        return wrapper


class enable_grad(no_grad):
    """Context manager that turns graph recording back on inside ``no_grad``."""

    def __enter__(self):
        self.prev = _GradMode.enabled
        _GradMode.enabled = True


def unbroadcast(grad, shape):
    """Sum ``grad`` over the axes that broadcasting added or stretched, to ``shape``."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1
    )
    return grad.sum(axis=axes, keepdims=True).reshape(shape)


class NodeHook:
    """``on_record(fn)`` is called on every recorded node while set (by ``graph.trace``)."""
    on_record = None


class Function:
    """Base class of every op; see the module docstring for the contract.

    Attributes set by ``apply`` on a recorded node:
      inputs      the input Tensors (edges of the graph, towards the leaves)
      needs_grad  per input, whether it requires a gradient (None while
                  ``forward`` runs on a node that is not recorded)
      versions    per input, its version counter when forward ran
      xp          numpy or cupy, taken from the inputs
    """

    saves_inputs = True   # False for ops whose backward never reads input values
    saves_output = False  # True for ops whose backward reads their own output (exp, softmax ...)
    output_is_view = False  # True when the output may be a view of input 0 (reshape, basic indexing ...)

    inputs = ()
    needs_grad = None
    freed = False
    output_hooks = None  # set by Tensor.register_hook / retain_grad on this node's output (hooks.py)

    @classmethod
    def apply(cls, *inputs, **params):
        """Run the op on Tensors ``inputs`` and return the output Tensor."""
        from .tensor import Tensor

        fn = cls()
        try:
            arrays = [t.data for t in inputs]
            fn.xp = get_array_module(*arrays)
            record = _GradMode.enabled and any(t.requires_grad for t in inputs)
            if record:
                fn.needs_grad = tuple(t.requires_grad for t in inputs)
            out = fn.forward(*arrays, **params)
        except Exception as e:
            err = op_input_error(fn.name, inputs, e)   # a minitx error naming op and inputs, or None
            if err is None:
                raise
            raise err from e
        result = Tensor._from_op(out, fn if record else None)
        if cls.output_is_view and fn.xp.may_share_memory(out, arrays[0]):
            result._vc = inputs[0]._vc        # a real view: in-place changes to either show in both
        if record:
            fn.inputs = inputs
            fn.versions = tuple(t._version for t in inputs)
            if cls.saves_output:
                fn.output_vc, fn.output_version = result._vc, result._version
            if NodeHook.on_record is not None:   # graph.trace(): note which module made fn
                NodeHook.on_record(fn)
        if AnomalyMode.enabled:
            check_forward(fn, out, inputs)
        return result

    def forward(self, *arrays, **params):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError

    def backward_graph(self, grad):
        """Optional: ``backward`` with differentiable ops on Tensors, for ``create_graph=True``.

        ``grad`` is a Tensor; use ``self.inputs`` (Tensors) and minitx ops, and
        return one Tensor (or None) per input.  See ``higher_order.py``.
        """
        raise GraphError(
            f"{self.name} has no backward_graph method, so backward(create_graph=True) cannot "
            f"differentiate through it (higher-order gradients); add backward_graph to "
            f"{self.name}, or keep {self.name} out of the graph you differentiate twice"
        )

    def run_backward(self, grad):
        """Call ``backward`` after checking the node is usable; unbroadcast the results."""
        if self.freed:
            raise GraphError(
                f"trying to backward through the graph a second time ({self.name} "
                "was already freed). Pass retain_graph=True to the first "
                "backward() if you need to backward twice."
            )
        if self.saves_inputs:
            for i, (t, v) in enumerate(zip(self.inputs, self.versions)):
                if t._version != v:
                    raise GraphError(
                        f"input {i} of {self.name} (shape {t.shape}) was modified "
                        f"in place after the forward pass (version {v}, now "
                        f"{t._version}); backward needs its old value. Use "
                        "x.clone() before changing it, or change it after backward()."
                    )
        if self.saves_output and self.output_vc[0] != self.output_version:
            raise GraphError(
                f"the output of {self.name} was modified in place after the forward pass; "
                "its backward needs the old value. Use y.clone() before changing it."
            )
        grads = self.backward(grad)
        if AnomalyMode.enabled:
            check_backward(self, grad, grads)
        return tuple(
            None if g is None or not t.requires_grad
            else unbroadcast(g if g.dtype == t.dtype else g.astype(t.dtype), t.shape)
            for g, t in zip(grads, self.inputs)     # a float32 input gets a float32 gradient
        )

    def release(self):
        """Drop saved arrays and inputs after backward (unless the graph is retained)."""
        self.__dict__.clear()
        self.freed = True

    @property
    def name(self):
        """The op's class name (used in error messages and graph pictures)."""
        return type(self).__name__

    def __repr__(self):
        return f"<{self.name} node>"
