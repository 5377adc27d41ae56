"""Functions that make new tensors: ``tensor``, ``zeros``, ``ones``, ``randn`` ...

Floating-point results are float32 unless ``dtype`` says otherwise; ``device``
is 'cpu' (default) or 'gpu'.  Random draws use the generator seeded by
``minitx.manual_seed``.
"""
import numpy as np

from . import backend
from .autograd.tensor import DEFAULT_FLOAT, Tensor


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new leaf Tensor with its own copy of a list, scalar or array (Python floats -> float32)."""
    t = Tensor(data, requires_grad=requires_grad, dtype=dtype, device=device)
    if t.data is (data.data if isinstance(data, Tensor) else data):
        t._data = t.data.copy()   # asarray made no copy: never alias the caller's array
    return t


def _make(fill, shape, dtype, device, requires_grad):
    xp = backend.array_module(device or "cpu")
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)
    data = fill(xp, shape, np.dtype(dtype or DEFAULT_FLOAT))
    return Tensor(data, requires_grad=requires_grad)


def zeros(*shape, dtype=None, device=None, requires_grad=False):
    """A tensor of zeros of ``shape``."""
    return _make(lambda xp, s, d: xp.zeros(s, dtype=d), shape, dtype, device, requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad=False):
    """A tensor of ones of ``shape``."""
    return _make(lambda xp, s, d: xp.ones(s, dtype=d), shape, dtype, device, requires_grad)


def full(shape, value, dtype=None, device=None, requires_grad=False):
    """A tensor of ``shape`` filled with ``value``."""
    return _make(lambda xp, s, d: xp.full(s, value, dtype=d), (shape,), dtype, device, requires_grad)


def randn(*shape, dtype=None, device=None, requires_grad=False):
    """Standard normal samples of ``shape``."""
    dev = device or "cpu"
    return _make(lambda xp, s, d: backend.rng(dev).standard_normal(s).astype(d),
                 shape, dtype, dev, requires_grad)


def rand(*shape, dtype=None, device=None, requires_grad=False):
    """Uniform samples in [0, 1) of ``shape``."""
    dev = device or "cpu"
    return _make(lambda xp, s, d: backend.rng(dev).random(s).astype(d), shape, dtype, dev, requires_grad)


def randint(low, high, shape, device=None):
    """Integers drawn uniformly from [low, high) (int64)."""
    return Tensor(backend.rng(device or "cpu").integers(low, high, size=shape), device=device)


def arange(*args, dtype=None, device=None):
    """``arange(stop)`` or ``arange(start, stop[, step])`` like NumPy."""
    xp = backend.array_module(device or "cpu")
    return Tensor(xp.arange(*args, dtype=dtype))


def zeros_like(t, dtype=None):
    """Zeros with ``t``'s shape, device and (unless given) dtype."""
    return Tensor(t.xp.zeros(t.shape, dtype=dtype or t.dtype))


def ones_like(t, dtype=None):
    """Ones with ``t``'s shape, device and (unless given) dtype."""
    return Tensor(t.xp.ones(t.shape, dtype=dtype or t.dtype))
