"""Shape ops: reshape, transpose / permute, expand, concat, stack, indexing.

None of them computes anything; their backward routes the gradient back to
where each element came from (``GetItem`` scatter-adds, so an element picked
twice receives both gradients).
"""
import numbers

from ... import backend
from ...errors import ShapeError
from ..function import Function
from ..tensor import Tensor


class Reshape(Function):
    """A new shape, same elements."""
    output_is_view = True
    saves_inputs = False

    def forward(self, x, shape):
        self.shape = x.shape
        try:
            return x.reshape(shape)
        except ValueError:
            raise ShapeError(f"cannot reshape a tensor of shape {x.shape} ({x.size} elements) to {shape}") from None

    def backward(self, g):
        return (g.reshape(self.shape),)

    backward_graph = backward                # Tensor.reshape records a Reshape


class Transpose(Function):
    """Axes reordered by a permutation."""
    output_is_view = True
    saves_inputs = False

    def forward(self, x, axes):
        if sorted(a % max(x.ndim, 1) for a in axes) != list(range(x.ndim)):
            raise ShapeError(f"permute: {axes} is not a permutation of the {x.ndim} axes of shape {x.shape}")
        self.axes = axes
        return x.transpose(axes)

    def _inverse(self):
        """The permutation that undoes ``axes``."""
        inverse = [0] * len(self.axes)
        for i, a in enumerate(self.axes):
            inverse[a % len(self.axes)] = i
        return tuple(inverse)

    def backward(self, g):
        return (g.transpose(self._inverse()),)

    def backward_graph(self, g):
        return (permute(g, self._inverse()),)


class Expand(Function):
    """Broadcast to a larger shape without copying."""
    output_is_view = True
    saves_inputs = False

    def forward(self, x, shape):
        try:
            return self.xp.broadcast_to(x, shape)
        except ValueError:
            raise ShapeError(f"cannot expand shape {x.shape} to {shape}") from None

    def backward(self, g):
        return (g,)             # run_backward (or run_backward_graph) sums g back to the input shape

    backward_graph = backward


class Concat(Function):
    """Join tensors along an existing axis."""
    saves_inputs = False

    def forward(self, *xs, axis):
        self.axis = axis
        self.sizes = [x.shape[axis] for x in xs]
        try:
            return self.xp.concatenate(xs, axis=axis)
        except ValueError:
            shapes = ", ".join(str(x.shape) for x in xs)
            raise ShapeError(f"concat along axis {axis}: shapes {shapes} differ off that axis") from None

    def backward(self, g):
        out, start = [], 0
        index = [slice(None)] * g.ndim
        for n in self.sizes:
            index[self.axis] = slice(start, start + n)
            out.append(g[tuple(index)])       # on a Tensor: a recorded GetItem
            start += n
        return tuple(out)

    backward_graph = backward


class Stack(Function):
    """Join equal-shape tensors along a new axis."""
    saves_inputs = False

    def forward(self, *xs, axis):
        self.axis = axis
        try:
            return self.xp.stack(xs, axis=axis)
        except ValueError:
            shapes = ", ".join(str(x.shape) for x in xs)
            raise ShapeError(f"stack needs equal shapes, got {shapes}") from None

    def backward(self, g):
        n = g.shape[self.axis]
        return tuple(self.xp.take(g, i, axis=self.axis) for i in range(n))

    def backward_graph(self, g):
        lead = (slice(None),) * (self.axis % g.ndim)
        return tuple(getitem(g, lead + (i,)) for i in range(g.shape[self.axis]))


class GetItem(Function):
    """``x[index]`` with slices, ints, None, Ellipsis, boolean or integer arrays."""
    output_is_view = True
    saves_inputs = False

    def forward(self, x, index):
        self.shape, self.dtype, self.index = x.shape, x.dtype, index
        try:
            return x[index]
        except IndexError as e:
            raise ShapeError(f"index {index!r} does not fit shape {x.shape}: {e}") from None

    def backward(self, g):
        return (_scatter_to_zeros(self.xp, g, self.shape, self.index),)

    def backward_graph(self, g):
        return (ScatterAdd.apply(g, shape=self.shape, index=self.index),)


def _is_basic(index):
    """True for an index of slices, ints, None and Ellipsis only (each slot picked at most once)."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (slice, numbers.Integral)) for p in parts)


def _scatter_to_zeros(xp, g, shape, index):
    """zeros(shape) with ``g`` added at ``index``: GetItem's backward (and ScatterAdd's forward)."""
    out = xp.zeros(shape, dtype=g.dtype)
    if _is_basic(index):
        out[index] = g                                    # slices and ints: no slot repeats
    else:
        backend.scatter_add(out, index, g)                # repeated indices add up
    return out


class ScatterAdd(Function):
    """``zeros(shape)`` with ``g`` added at ``index`` (repeats add up): GetItem's backward as an op."""
    saves_inputs = False

    def forward(self, g, shape, index):
        self.index = index
        return _scatter_to_zeros(self.xp, g, shape, index)

    def backward(self, gg):
        return (gg[self.index],)                          # each slot of g went to out[index]

    def backward_graph(self, gg):
        return (getitem(gg, self.index),)


# ------------------------------------------------------------------ wrappers
def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def reshape(x, *shape):
    """``x`` with a new shape (one entry may be -1)."""
    return Reshape.apply(x, shape=_shape_arg(shape))


def transpose(x, *axes):
    """Swap two axes (``transpose(x, 1, 2)``) or, with none given, reverse all axes."""
    if len(axes) == 0:
        perm = tuple(reversed(range(x.ndim)))
    elif len(axes) == 2:
        perm = list(range(x.ndim))
        a, b = axes[0] % x.ndim, axes[1] % x.ndim
        perm[a], perm[b] = perm[b], perm[a]
        perm = tuple(perm)
    else:
        raise ShapeError(f"transpose takes two axes to swap, got {axes}; use permute for a full order")
    return Transpose.apply(x, axes=perm)


def permute(x, *axes):
    """Reorder all axes: ``permute(x, 0, 2, 1, 3)``."""
    return Transpose.apply(x, axes=_shape_arg(axes))


def expand(x, *shape):
    """Broadcast ``x`` to ``shape`` without copying."""
    return Expand.apply(x, shape=_shape_arg(shape))


def unsqueeze(x, axis):
    """Insert a size-1 axis at ``axis``."""
    axis = axis % (x.ndim + 1)
    return reshape(x, x.shape[:axis] + (1,) + x.shape[axis:])


def squeeze(x, axis=None):
    """Drop size-1 axes (all of them, or only ``axis``)."""
    if axis is None:
        return reshape(x, tuple(n for n in x.shape if n != 1))
    axis = axis % x.ndim
    if x.shape[axis] != 1:
        raise ShapeError(f"squeeze: axis {axis} of shape {x.shape} has size {x.shape[axis]}, not 1")
    return reshape(x, x.shape[:axis] + x.shape[axis + 1:])


def concat(tensors, axis=0):
    """Join tensors along an existing axis."""
    ndim = tensors[0].ndim if len(tensors) else 0
    if not -ndim <= axis < max(ndim, 1) or ndim == 0:
        raise ShapeError(f"concat: axis {axis} is out of range for tensors with {ndim} dimensions")
    return Concat.apply(*tensors, axis=axis)


def stack(tensors, axis=0):
    """Join equal-shape tensors along a new axis."""
    return Stack.apply(*tensors, axis=axis)


def getitem(x, index):
    """``x[index]``; Tensors inside the index are replaced by their arrays."""
    if isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    elif isinstance(index, Tensor):
        index = index.data
    return GetItem.apply(x, index=index)
