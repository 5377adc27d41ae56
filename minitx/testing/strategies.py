"""Hypothesis strategies: shapes, broadcastable shape pairs, bounded float
arrays, boolean masks, key-padding masks and token ids (all NumPy; move them to
a device with ``minitx.tensor(a, device=...)``)."""
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


def shapes(min_dims=1, max_dims=3, min_side=1, max_side=4):
    """Array shapes, size-1 axes included (they exercise broadcasting)."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims,
                            min_side=min_side, max_side=max_side)


@st.composite
def broadcastable_shapes(draw, num_shapes=2, min_dims=0, max_dims=3, max_side=4):
    """A tuple of ``num_shapes`` shapes that broadcast together (NumPy rules)."""
    base = draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side))
    result = draw(hnp.mutually_broadcastable_shapes(
        num_shapes=num_shapes, base_shape=base, min_dims=min_dims, max_dims=max_dims,
        max_side=max_side))
    return result.input_shapes


def arrays(shape, dtype=np.float64, min_value=-3.0, max_value=3.0):
    """Float arrays of ``shape`` (a tuple or a strategy of shapes) with bounded, finite values."""
    return hnp.arrays(dtype, shape, elements=st.floats(min_value, max_value, allow_nan=False,
                                                       allow_infinity=False, width=64))


def bool_masks(shape):
    """Boolean arrays of ``shape`` (any pattern, all-False rows included)."""
    return hnp.arrays(np.bool_, shape)


@st.composite
def padding_masks(draw, batch, length, min_valid=1):
    """Key-padding masks (batch, length), True = real token: each row a prefix
    of at least ``min_valid`` True values followed by padding."""
    lens = draw(st.lists(st.integers(min(min_valid, length), length), min_size=batch, max_size=batch))
    return np.arange(length)[None, :] < np.array(lens)[:, None]


def token_ids(shape, vocab):
    """Integer token ids in [0, vocab) of ``shape`` (int64)."""
    return hnp.arrays(np.int64, shape, elements=st.integers(0, vocab - 1))
