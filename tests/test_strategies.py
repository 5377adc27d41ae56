"""The public Hypothesis strategies in minitx.testing produce what they promise."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from minitx.testing import arrays, bool_masks, broadcastable_shapes, padding_masks, shapes, token_ids


@given(shape=shapes())
def test_shapes_respect_bounds(shape):
    assert 1 <= len(shape) <= 3 and all(1 <= n <= 4 for n in shape)


@given(shape=shapes(min_dims=2, max_dims=2, min_side=2, max_side=3))
def test_shapes_custom_bounds(shape):
    assert len(shape) == 2 and all(2 <= n <= 3 for n in shape)


@given(pair=broadcastable_shapes())
def test_broadcastable_shapes_broadcast(pair):
    a, b = pair
    np.broadcast_shapes(a, b)                   # raises if they do not
    assert all(n <= 4 for n in a + b) and len(a) <= 3 and len(b) <= 3


@given(triple=broadcastable_shapes(num_shapes=3, min_dims=1))
def test_broadcastable_shapes_many(triple):
    assert len(triple) == 3 and all(len(s) >= 1 for s in triple)
    np.broadcast_shapes(*triple)


@given(a=arrays(shapes(), min_value=-2.0, max_value=1.0))
def test_arrays_are_bounded_finite_float64(a):
    assert a.dtype == np.float64 and np.isfinite(a).all()
    assert (a >= -2.0).all() and (a <= 1.0).all()


@given(a=arrays((2, 3), dtype=np.float32))
def test_arrays_with_a_fixed_shape_and_dtype(a):
    assert a.shape == (2, 3) and a.dtype == np.float32


@given(m=bool_masks((3, 2)))
def test_bool_masks(m):
    assert m.shape == (3, 2) and m.dtype == np.bool_


@given(data=st.data(), batch=st.integers(1, 4), length=st.integers(1, 5), min_valid=st.integers(0, 5))
def test_padding_masks_are_prefixes(data, batch, length, min_valid):
    m = data.draw(padding_masks(batch, length, min_valid=min_valid))
    assert m.shape == (batch, length) and m.dtype == np.bool_
    lens = m.sum(1)
    assert (lens >= min(min_valid, length)).all()
    np.testing.assert_array_equal(m, np.arange(length)[None, :] < lens[:, None])   # True then False


@given(ids=token_ids((2, 3), vocab=5))
def test_token_ids(ids):
    assert ids.shape == (2, 3) and ids.dtype == np.int64
    assert (0 <= ids).all() and (ids < 5).all()
