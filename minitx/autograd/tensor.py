"""``Tensor``: an array plus what autograd needs to differentiate through it.

A Tensor holds
  data           a numpy or cupy array (the device follows from its type)
  requires_grad  whether gradients should flow to it
  grad           a Tensor of the same shape after ``backward()``, else None
  creator        the Function node that produced it (None for a leaf)
  _version       a counter bumped by every in-place change, so that backward can
                 refuse to use a value that changed after forward saw it

Arithmetic operators and methods call the ops in ``minitx.autograd.ops``.
"""
import numpy as np

from .. import backend
from ..errors import DTypeError, GraphError, ShapeError
from . import engine, hooks
from .function import is_grad_enabled

DEFAULT_FLOAT = np.float32


def _as_array(data, dtype=None, device=None):
    """Turn lists, scalars and arrays into an array on ``device`` (floats -> float32)."""
    if isinstance(data, Tensor):
        data = data.data
    if device is not None:
        xp = backend.array_module(device)
    else:
        xp = backend.get_array_module(data)
    is_array = hasattr(data, "dtype") and hasattr(data, "shape")
    arr = xp.asarray(data, dtype=dtype)
    if dtype is None and not is_array and arr.dtype.kind == "f":
        arr = arr.astype(DEFAULT_FLOAT)    # Python floats: float32, like PyTorch
    return arr


class Tensor:
    """An n-dimensional array that records the ops applied to it.

    ``Tensor(data, requires_grad=False, dtype=None, device=None)``: ``data`` is a
    list, scalar, NumPy or CuPy array.  Python floats become float32; arrays keep
    their dtype.  ``device`` ('cpu' or 'gpu') copies the data there.
    """

    __array_priority__ = 100  # so that ndarray * Tensor calls Tensor.__rmul__
    _hooks = None             # a hooks.TensorHooks once register_hook / retain_grad is called

    def __init__(self, data, requires_grad=False, dtype=None, device=None, name=None):
        self._data = _as_array(data, dtype, device)
        self._vc = [0]              # the version counter, shared with views and detach()ed copies
        if requires_grad and self.data.dtype.kind != "f":
            raise DTypeError(
                f"only floating-point tensors can require gradients, got dtype "
                f"{self.data.dtype}; convert with .float() first"
            )
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self.creator = None
        self.name = name

    @classmethod
    def _from_op(cls, data, creator):
        """Wrap an op's output array without copying or converting it."""
        t = cls.__new__(cls)
        t._data = data
        t._vc = [0]
        t.requires_grad = creator is not None
        t.grad = None
        t.creator = creator
        t.name = None
        return t

    # ------------------------------------------------------------ data access
    @property
    def data(self):
        """The underlying array.  Assigning a new array counts as an in-place change of this tensor."""
        return self._data

    @data.setter
    def data(self, value):
        # New memory: a counter of its own, one ahead, so this tensor's recorded uses see a
        # change while views and detach()ed copies of the old memory (which did not change) do not.
        self._data = value
        self._vc = [self._vc[0] + 1]

    @property
    def _version(self):
        """How many in-place changes this tensor's memory has seen (shared with its views)."""
        return self._vc[0]

    def bump_version(self):
        """Record that ``data`` was changed in place (done by every in-place method)."""
        self._vc[0] += 1

    @property
    def shape(self):
        """The shape tuple."""
        return self._data.shape

    @property
    def ndim(self):
        """Number of axes."""
        return self._data.ndim

    @property
    def dtype(self):
        """The NumPy dtype."""
        return self._data.dtype

    @property
    def size(self):
        """Number of elements."""
        return self._data.size

    def numel(self):
        """Number of elements."""
        return self._data.size

    def __len__(self):
        return len(self._data)

    @property
    def device(self):
        """``'cpu'`` or ``'gpu'``."""
        return backend.device_of(self._data)

    @property
    def xp(self):
        """numpy or cupy, whichever holds ``data``."""
        return backend.get_array_module(self._data)

    @property
    def is_leaf(self):
        """True for tensors not made by a recorded op (parameters, inputs)."""
        return self.creator is None

    def numpy(self):
        """The data as a NumPy array (copies from the GPU; shares memory on CPU)."""
        return backend.to_numpy(self._data)

    def item(self):
        """The value of a one-element tensor as a Python number (syncs with the GPU)."""
        if self.size != 1:
            raise ShapeError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def tolist(self):
        """The data as nested Python lists (copies from the GPU)."""
        return self.numpy().tolist()

    def to(self, device=None, dtype=None):
        """A copy on ``device`` and/or with ``dtype`` (self when nothing changes).

        The copy is differentiable only for a dtype change on the same device.
        """
        t = self
        if device is not None and backend.normalize_device(device) != self.device:
            t = Tensor(backend.to_device(self._data, device), requires_grad=self.requires_grad and self.is_leaf)
        if dtype is not None and np.dtype(dtype) != t.dtype:
            t = ops.astype(t, dtype)
        return t

    def float(self):
        """float32 copy (differentiable)."""
        return self.to(dtype=np.float32)

    def double(self):
        """float64 copy (differentiable)."""
        return self.to(dtype=np.float64)

    def long(self):
        """int64 copy (not differentiable)."""
        return Tensor(self._data.astype(np.int64))

    def detach(self):
        """A new leaf sharing this tensor's data, cut off from the graph."""
        t = Tensor._from_op(self._data, None)
        t._vc = self._vc            # same memory, same version counter
        return t

    def clone(self):
        """A differentiable copy with its own memory."""
        return ops.clone(self)

    def requires_grad_(self, flag=True):
        """Set ``requires_grad`` on a leaf in place; returns self."""
        if not self.is_leaf:
            raise GraphError("requires_grad_ can only be changed on leaf tensors; use detach() first")
        if flag and self.dtype.kind != "f":
            raise DTypeError(f"only floating-point tensors can require gradients, got {self.dtype}")
        self.requires_grad = bool(flag)
        return self

    # ---------------------------------------------------------------- autograd
    def backward(self, grad=None, retain_graph=False, create_graph=False):
        """Compute gradients of this tensor w.r.t. every leaf that requires them.

        ``grad`` (dL/dself) may be omitted only for a one-element tensor.  The
        graph is freed afterwards unless ``retain_graph=True``.  With
        ``create_graph=True`` the backward pass is itself recorded, so each
        ``.grad`` can be differentiated again (implies ``retain_graph``).
        """
        seed = grad if create_graph and isinstance(grad, Tensor) else None
        if not self.requires_grad:
            raise GraphError(
                "backward() on a tensor that does not require grad: no input of "
                "the computation had requires_grad=True (or it ran under no_grad())"
            )
        if grad is None:
            if self.size != 1:
                raise GraphError(
                    f"backward() on a non-scalar tensor of shape {self.shape} needs "
                    "an explicit gradient: call t.backward(grad) with grad of that "
                    "shape, or reduce first (t.sum().backward())"
                )
            grad = self.xp.ones_like(self._data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else self.xp.asarray(grad, dtype=self.dtype)
            if grad.shape != self.shape:
                raise GraphError(f"gradient shape {grad.shape} does not match tensor shape {self.shape}")
        if self.creator is None:   # a leaf: its gradient is the seed itself
            if self._hooks is not None:
                grad = self._hooks.fire(grad)
            seed = grad.copy()           # never alias the caller's array
            self.grad = Tensor._from_op(seed, None) if self.grad is None else Tensor._from_op(self.grad.data + seed, None)
            return
        if create_graph:           # the seed becomes part of the recorded backward graph
            grad = seed if seed is not None else Tensor._from_op(grad, None)
        engine.backward(self, grad, retain_graph=retain_graph, create_graph=create_graph)

    def register_hook(self, hook):
        """Call ``hook(grad)`` when backward computes this tensor's gradient (a Tensor).

        A hook may return a replacement gradient (same shape).  Works on leaves
        (called once with the total gradient, before it is added to ``.grad``)
        and on non-leaves.  Returns a handle; ``handle.remove()`` unregisters.
        """
        return hooks.register_hook(self, hook)

    def retain_grad(self):
        """Fill ``.grad`` of this non-leaf tensor during backward (leaves always get one)."""
        hooks.retain_grad(self)

    def zero_grad(self):
        """Forget the accumulated gradient."""
        self.grad = None

    # ------------------------------------------------------------- in place
    def _check_inplace(self):
        if self.requires_grad and is_grad_enabled():
            raise GraphError(
                "in-place change of a tensor that requires grad: wrap it in "
                "`with minitx.no_grad():` (e.g. an optimizer step) or use the "
                "out-of-place form"
            )

    def __setitem__(self, index, value):
        self._check_inplace()
        self._data[_index_array(index)] = value.data if isinstance(value, Tensor) else value
        self.bump_version()

    def fill_(self, value):
        """Set every element to ``value`` in place."""
        self._check_inplace()
        self._data.fill(value)
        self.bump_version()
        return self

    def zero_(self):
        """Set every element to zero in place."""
        return self.fill_(0)

    def copy_(self, other):
        """Copy ``other``'s values into this tensor in place (same shape and device)."""
        self._check_inplace()
        src = other.data if isinstance(other, Tensor) else other
        self._data[...] = src
        self.bump_version()
        return self

    def add_(self, other, alpha=1.0):
        """``self += alpha * other`` in place."""
        self._check_inplace()
        src = other.data if isinstance(other, Tensor) else other
        self._data += alpha * src if alpha != 1.0 else src
        self.bump_version()
        return self

    def mul_(self, other):
        """``self *= other`` in place."""
        self._check_inplace()
        self._data *= other.data if isinstance(other, Tensor) else other
        self.bump_version()
        return self

    # -------------------------------------------------------------- operators
    def __add__(self, other): return ops.add(self, other)
    def __radd__(self, other): return ops.add(other, self)
    def __sub__(self, other): return ops.sub(self, other)
    def __rsub__(self, other): return ops.sub(other, self)
    def __mul__(self, other): return ops.mul(self, other)
    def __rmul__(self, other): return ops.mul(other, self)
    def __truediv__(self, other): return ops.div(self, other)
    def __rtruediv__(self, other): return ops.div(other, self)
    def __neg__(self): return ops.neg(self)
    def __pow__(self, exponent): return ops.pow(self, exponent)
    def __matmul__(self, other): return ops.matmul(self, other)
    def __rmatmul__(self, other): return ops.matmul(other, self)
    def __getitem__(self, index): return ops.getitem(self, index)

    # comparisons give boolean tensors outside the graph
    def __eq__(self, other): return Tensor._from_op(self._data == _raw(other), None)
    def __ne__(self, other): return Tensor._from_op(self._data != _raw(other), None)
    def __lt__(self, other): return Tensor._from_op(self._data < _raw(other), None)
    def __le__(self, other): return Tensor._from_op(self._data <= _raw(other), None)
    def __gt__(self, other): return Tensor._from_op(self._data > _raw(other), None)
    def __ge__(self, other): return Tensor._from_op(self._data >= _raw(other), None)
    def __invert__(self): return Tensor._from_op(~self._data, None)
    def __and__(self, other): return Tensor._from_op(self._data & _raw(other), None)
    def __or__(self, other): return Tensor._from_op(self._data | _raw(other), None)
    __hash__ = object.__hash__

    def __bool__(self):
        if self.size != 1:
            raise ShapeError(f"the truth value of a tensor of shape {self.shape} is ambiguous; use .any() or .all()")
        return bool(self.item())

    def any(self):
        """True if any element is non-zero (a 0-d boolean tensor)."""
        return Tensor._from_op(self._data.any(), None)

    def all(self):
        """True if every element is non-zero (a 0-d boolean tensor)."""
        return Tensor._from_op(self._data.all(), None)

    # ----------------------------------------------------------------- methods
    def sum(self, axis=None, keepdims=False):
        """Method form of ``minitx.sum`` (see its docstring)."""
        return ops.sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False):
        """Method form of ``minitx.mean`` (see its docstring)."""
        return ops.mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False):
        """Method form of ``minitx.max`` (see its docstring)."""
        return ops.max(self, axis, keepdims)
    def logsumexp(self, axis=-1, keepdims=False):
        """Method form of ``minitx.logsumexp`` (see its docstring)."""
        return ops.logsumexp(self, axis, keepdims)
    def softmax(self, axis=-1):
        """Method form of ``minitx.softmax`` (see its docstring)."""
        return ops.softmax(self, axis)
    def log_softmax(self, axis=-1):
        """Method form of ``minitx.log_softmax`` (see its docstring)."""
        return ops.log_softmax(self, axis)
    def exp(self):
        """Method form of ``minitx.exp`` (see its docstring)."""
        return ops.exp(self)
    def log(self):
        """Method form of ``minitx.log`` (see its docstring)."""
        return ops.log(self)
    def sqrt(self):
        """Method form of ``minitx.sqrt`` (see its docstring)."""
        return ops.sqrt(self)
    def tanh(self):
        """Method form of ``minitx.tanh`` (see its docstring)."""
        return ops.tanh(self)
    def sigmoid(self):
        """Method form of ``minitx.sigmoid`` (see its docstring)."""
        return ops.sigmoid(self)
    def relu(self):
        """Method form of ``minitx.relu`` (see its docstring)."""
        return ops.relu(self)
    def reshape(self, *shape):
        """Method form of ``minitx.reshape`` (see its docstring)."""
        return ops.reshape(self, *shape)
    def view(self, *shape):
        """Same as ``reshape``."""
        return ops.reshape(self, *shape)
    def transpose(self, *axes):
        """Method form of ``minitx.transpose`` (see its docstring)."""
        return ops.transpose(self, *axes)
    def permute(self, *axes):
        """Method form of ``minitx.permute`` (see its docstring)."""
        return ops.permute(self, *axes)
    def expand(self, *shape):
        """Method form of ``minitx.expand`` (see its docstring)."""
        return ops.expand(self, *shape)
    def unsqueeze(self, axis):
        """Method form of ``minitx.unsqueeze`` (see its docstring)."""
        return ops.unsqueeze(self, axis)
    def squeeze(self, axis=None):
        """Method form of ``minitx.squeeze`` (see its docstring)."""
        return ops.squeeze(self, axis)
    def flatten(self, start=0):
        """Merge the axes from ``start`` on into one."""
        return ops.reshape(self, self.shape[:start] + (-1,))
    def masked_fill(self, mask, value):
        """Method form of ``minitx.masked_fill`` (see its docstring)."""
        return ops.masked_fill(self, mask, value)
    def argmax(self, axis=None):
        """Indices of the maxima along ``axis`` (not differentiable)."""
        return Tensor._from_op(self._data.argmax(axis=axis), None)

    @property
    def T(self):
        """All axes reversed (the transpose of a matrix)."""
        return ops.transpose(self)

    def __repr__(self):
        extra = ", requires_grad=True" if self.requires_grad else ""
        if self.creator is not None:
            extra += f", creator={self.creator.name}"
        body = np.array2string(self.numpy(), precision=4, threshold=20, prefix="tensor(")
        dev = ", device='gpu'" if self.device == "gpu" else ""
        return f"tensor({body}, dtype={self.dtype}{dev}{extra})"


def _raw(x):
    return x.data if isinstance(x, Tensor) else x


def _index_array(index):
    """Replace Tensors inside an index by their arrays."""
    if isinstance(index, tuple):
        return tuple(_raw(i) for i in index)
    return _raw(index)


from . import ops  # noqa: E402  (ops import Tensor; methods above call them at run time)
