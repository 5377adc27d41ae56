"""Basic layers: Linear, Embedding, LayerNorm, Dropout, FeedForward and the two
positional embeddings.

Initialisation follows PyTorch (and x-transformers where it differs):
  Linear          weight and bias ~ U(-1/sqrt(in), 1/sqrt(in))   (PyTorch's kaiming_uniform(a=sqrt 5))
  Embedding       weight ~ N(0, 1)                               (PyTorch); token embeddings of the
                  transformer use N(0, 2/dim) (kaiming normal, as x-transformers)
  LayerNorm       gain 1, bias 0
  AbsolutePositionalEmbedding  N(0, 1), output scaled by dim ** -0.5  (x-transformers)
"""
import math
import numbers

import numpy as np

from .. import backend
from ..autograd import ops
from ..autograd.anomaly import is_anomaly_enabled
from ..autograd.tensor import DEFAULT_FLOAT, Tensor
from ..errors import DeviceError, DTypeError, InputError, ShapeError, check_probability
from .module import Module, Parameter


def _uniform(shape, bound):
    """A float32 CPU Parameter drawn from U(-bound, bound) (move the module with .to)."""
    return Parameter(backend.rng("cpu").uniform(-bound, bound, size=shape).astype(DEFAULT_FLOAT))


def _normal(shape, std):
    """A float32 CPU Parameter drawn from N(0, std^2)."""
    return Parameter((backend.rng("cpu").standard_normal(shape) * std).astype(DEFAULT_FLOAT))


def as_array(x, name):
    """The array inside ``x`` (a Tensor, NumPy/CuPy array, or nested lists read by NumPy)."""
    data = x.data if isinstance(x, Tensor) else x
    if not hasattr(data, "dtype") or not hasattr(data, "shape"):
        try:
            data = np.asarray(data)
        except (ValueError, TypeError) as e:        # ragged lists and the like
            raise ShapeError(f"{name} cannot be read as an array ({e}); pass a rectangular "
                             "array, not ragged lists") from None
    return data


def check_input(layer, x, dim, weight):
    """Check the input ``x`` of ``layer``, which reads ``dim`` features on its last axis.

    Raises DTypeError for a non-Tensor or non-float input, ShapeError naming the
    expected size when the last axis does not fit, and DeviceError naming both
    devices when ``x`` and the layer's ``weight`` live on different ones.
    """
    if isinstance(x, Tensor) and x.ndim and x.shape[-1] == dim and x.dtype == weight.dtype \
            and x.device == weight.device:
        return                                          # the common case: a few attribute reads
    name = f"{type(layer).__name__}({layer.extra_repr()})"
    if not isinstance(x, Tensor):
        raise DTypeError(f"{name}: input must be a minitx Tensor, got {type(x).__name__}; "
                         "wrap it with minitx.tensor(x)")
    if x.ndim == 0 or x.shape[-1] != dim:
        raise ShapeError(f"{name}: input has shape {x.shape}, expected (..., {dim}): "
                         f"its last axis must have size {dim}")
    if x.dtype.kind != "f":
        raise DTypeError(f"{name}: input must be floating point, got dtype {x.dtype}; convert with x.float()")
    if x.dtype != weight.dtype:
        raise DTypeError(f"{name}: input is {x.dtype} but the layer's parameters are {weight.dtype}; "
                         f"convert one of them (x.to(dtype={str(weight.dtype)!r}) or layer.to(dtype={str(x.dtype)!r}))")
    raise DeviceError(f"{name}: input is on {x.device} but the layer's parameters are on "
                      f"{weight.device}; move one of them (x.to({weight.device!r}) or "
                      f"layer.to({x.device!r}))")


def positive_int(layer, name, value):
    """``value`` as an int, or InputError naming the layer and the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f"{layer}: {name} must be a positive integer, got {value!r}")
    return int(value)


class Linear(Module):
    """``y = x @ weight.T + bias``; weight (out_features, in_features) as in PyTorch."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        in_features = positive_int("Linear", "in_features", in_features)
        out_features = positive_int("Linear", "out_features", out_features)
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight = _uniform((out_features, in_features), bound)
        self.bias = _uniform((out_features,), bound) if bias else None

    def forward(self, x):
        """x (..., in_features) -> (..., out_features)."""
        check_input(self, x, self.in_features, self.weight)
        return ops.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table: integer ids (...) -> rows of ``weight`` (num_embeddings, dim)."""

    def __init__(self, num_embeddings, embedding_dim, std=1.0):
        super().__init__()
        num_embeddings = positive_int("Embedding", "num_embeddings", num_embeddings)
        embedding_dim = positive_int("Embedding", "embedding_dim", embedding_dim)
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = _normal((num_embeddings, embedding_dim), std)

    def forward(self, ids):
        """ids (...) int -> (..., dim).  Host ids (lists, NumPy) are copied to the table's device.

        Ids are range-checked when they are on the host (free); ids already on
        the GPU only inside ``detect_anomaly()`` (checking costs a host sync).
        """
        data = as_array(ids, "ids")
        on_gpu = backend.is_gpu_array(data)
        if on_gpu and self.weight.device != "gpu":
            raise DeviceError(f"Embedding({self.extra_repr()}): ids are on gpu but the table is on "
                              f"{self.weight.device}; move one of them")
        if self.weight.device == "gpu" and data.dtype.kind in "iu" and data.size \
                and (not on_gpu or is_anomaly_enabled()) \
                and bool(((data < 0) | (data >= self.num_embeddings)).any()):   # (ops check CPU tables)
            lo, hi = int(data.min()), int(data.max())
            raise ShapeError(f"Embedding({self.extra_repr()}): index out of range: ids span [{lo}, {hi}] "
                             f"but the table has {self.num_embeddings} rows")
        return ops.embedding(data, self.weight)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class LayerNorm(Module):
    """Normalise the last axis, then multiply by ``weight`` (and add ``bias`` if ``bias=True``).

    x-transformers' LayerNorm has a gain and no bias; PyTorch's has both.
    """

    def __init__(self, dim, eps=1e-5, bias=True):
        super().__init__()
        dim = positive_int("LayerNorm", "dim", dim)
        self.dim, self.eps = dim, eps
        self.weight = Parameter(np.ones(dim, dtype=DEFAULT_FLOAT))
        self.bias = Parameter(np.zeros(dim, dtype=DEFAULT_FLOAT)) if bias else None

    def forward(self, x):
        """x (..., dim) -> (..., dim)."""
        check_input(self, x, self.dim, self.weight)
        return ops.layer_norm(x, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.dim}, eps={self.eps}, bias={self.bias is not None}"


class Dropout(Module):
    """Zero elements with probability ``p`` in training (scaling the rest by 1/(1-p)); identity in eval."""

    def __init__(self, p=0.0):
        super().__init__()
        self.p = check_probability("Dropout", "p", p)

    def forward(self, x):
        if not isinstance(x, Tensor):
            raise DTypeError(f"Dropout: input must be a minitx Tensor, got {type(x).__name__}")
        return ops.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class FeedForward(Module):
    """Position-wise MLP: Linear(dim, dim*mult) -> GELU -> Dropout -> Linear(dim*mult, dim_out)."""

    def __init__(self, dim, mult=4, dim_out=None, dropout=0.0, bias=True, approximate_gelu=False):
        super().__init__()
        inner = int(dim * mult)
        self.proj_in = Linear(dim, inner, bias=bias)
        self.dropout = Dropout(dropout)
        self.proj_out = Linear(inner, dim_out or dim, bias=bias)
        self.approximate = "tanh" if approximate_gelu else "none"

    def forward(self, x):
        """x (..., dim) -> (..., dim_out)."""
        h = ops.gelu(self.proj_in(x), approximate=self.approximate)
        return self.proj_out(self.dropout(h))


class AbsolutePositionalEmbedding(Module):
    """Learned positions: row ``i`` of a (max_seq_len, dim) table, scaled by dim ** -0.5."""

    def __init__(self, dim, max_seq_len):
        super().__init__()
        self.max_seq_len, self.scale = max_seq_len, dim ** -0.5
        self.emb = Embedding(max_seq_len, dim)

    def forward(self, length, offset=0):
        """Embeddings of positions offset .. offset+length-1 -> (length, dim)."""
        if offset + length > self.max_seq_len:
            raise ShapeError(f"sequence of length {offset + length} is longer than max_seq_len "
                             f"{self.max_seq_len}; build the model with a larger max_seq_len")
        return self.emb.weight[offset:offset + length] * self.scale   # rows of the table, (length, dim)


class SinusoidalPositionalEmbedding(Module):
    """Fixed sin/cos positions (Vaswani et al.): no parameters, any length.

    Row ``p`` is ``[sin(p * f_0), ..., sin(p * f_{d/2-1}), cos(p * f_0), ...]`` with
    ``f_i = theta ** (-2 i / dim)``.
    """

    def __init__(self, dim, theta=10000.0):
        super().__init__()
        if dim % 2:
            raise InputError(f"SinusoidalPositionalEmbedding: dim must be even, got {dim}")
        self.dim = dim
        self.register_buffer("inv_freq", theta ** (-np.arange(0, dim, 2, dtype=np.float64) / dim))

    def forward(self, length, offset=0):
        """Embeddings of positions offset .. offset+length-1 -> (length, dim)."""
        xp = backend.get_array_module(self.inv_freq)
        pos = xp.arange(offset, offset + length, dtype=np.float64)
        angles = pos[:, None] * self.inv_freq[None, :]                # (length, dim/2)
        table = xp.concatenate([xp.sin(angles), xp.cos(angles)], axis=-1).astype(DEFAULT_FLOAT)
        return Tensor(table)
