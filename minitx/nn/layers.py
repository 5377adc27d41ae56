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

import numpy as np

from .. import backend
from ..autograd import ops
from ..autograd.tensor import DEFAULT_FLOAT, Tensor
from ..errors import ShapeError
from .module import Module, Parameter


def _uniform(shape, bound, device="cpu"):
    data = backend.rng("cpu").uniform(-bound, bound, size=shape).astype(DEFAULT_FLOAT)
    return Parameter(data, device=device if device != "cpu" else None)


def _normal(shape, std, device="cpu"):
    data = (backend.rng("cpu").standard_normal(shape) * std).astype(DEFAULT_FLOAT)
    return Parameter(data, device=device if device != "cpu" else None)


class Linear(Module):
    """``y = x @ weight.T + bias``; weight (out_features, in_features) as in PyTorch."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight = _uniform((out_features, in_features), bound)
        self.bias = _uniform((out_features,), bound) if bias else None

    def forward(self, x):
        """x (..., in_features) -> (..., out_features)."""
        return ops.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table: integer ids (...) -> rows of ``weight`` (num_embeddings, dim)."""

    def __init__(self, num_embeddings, embedding_dim, std=1.0):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = _normal((num_embeddings, embedding_dim), std)

    def forward(self, ids):
        """ids (...) int -> (..., dim)."""
        return ops.embedding(ids, self.weight)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class LayerNorm(Module):
    """Normalise the last axis, then multiply by ``weight`` (and add ``bias`` if ``bias=True``).

    x-transformers' LayerNorm has a gain and no bias; PyTorch's has both.
    """

    def __init__(self, dim, eps=1e-5, bias=True):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = Parameter(np.ones(dim, dtype=DEFAULT_FLOAT))
        self.bias = Parameter(np.zeros(dim, dtype=DEFAULT_FLOAT)) if bias else None

    def forward(self, x):
        """x (..., dim) -> (..., dim)."""
        return ops.layer_norm(x, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.dim}, eps={self.eps}, bias={self.bias is not None}"


class Dropout(Module):
    """Zero elements with probability ``p`` in training (scaling the rest by 1/(1-p)); identity in eval."""

    def __init__(self, p=0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x):
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
        pos = self.emb.weight.xp.arange(offset, offset + length)
        return self.emb(pos) * self.scale


class SinusoidalPositionalEmbedding(Module):
    """Fixed sin/cos positions (Vaswani et al.): no parameters, any length.

    Row ``p`` is ``[sin(p * f_0), ..., sin(p * f_{d/2-1}), cos(p * f_0), ...]`` with
    ``f_i = theta ** (-2 i / dim)``.
    """

    def __init__(self, dim, theta=10000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"SinusoidalPositionalEmbedding: dim must be even, got {dim}")
        self.dim = dim
        self.register_buffer("inv_freq", theta ** (-np.arange(0, dim, 2, dtype=np.float64) / dim))

    def forward(self, length, offset=0):
        """Embeddings of positions offset .. offset+length-1 -> (length, dim)."""
        xp = backend.get_array_module(self.inv_freq)
        pos = xp.arange(offset, offset + length, dtype=np.float64)
        angles = pos[:, None] * self.inv_freq[None, :]                # (length, dim/2)
        table = xp.concatenate([xp.sin(angles), xp.cos(angles)], axis=-1).astype(DEFAULT_FLOAT)
        return Tensor(table)
