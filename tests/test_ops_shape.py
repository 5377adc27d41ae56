"""Shape ops: reshape, transpose / permute, expand, (un)squeeze, concat, stack and
indexing (basic slices, integer arrays with repeats, boolean masks)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minitx
from minitx.testing import arrays, bool_masks, shapes


def tensor(a, device, grad=False):
    return minitx.tensor(np.asarray(a, dtype=np.float64), device=device, requires_grad=grad)


def index_tensor(a, device):
    return minitx.tensor(np.asarray(a, dtype=np.int64), device=device)


@given(a=arrays(shapes()), data=st.data())
def test_reshape(device, a, data):
    x = tensor(a, device, grad=True)
    # a random factorisation of the size: reverse the shape, flatten, or add size-1 axes
    target = data.draw(st.sampled_from([a.shape[::-1], (a.size,), (-1,), (1,) + a.shape + (1,), (a.size, 1)]))
    out = x.reshape(target)
    np.testing.assert_array_equal(out.numpy(), a.reshape(target))
    assert minitx.gradcheck(lambda t: minitx.reshape(t, target), x)
    assert x.grad.shape == a.shape


def test_reshape_mismatch_raises(T):
    with pytest.raises(minitx.ShapeError, match=r"\(2, 3\).*\(4, 2\)"):
        T(np.ones((2, 3))).reshape(4, 2)


@given(a=arrays(shapes(min_dims=2, max_dims=4)), data=st.data())
def test_transpose_two_axes(device, a, data):
    i = data.draw(st.integers(-a.ndim, a.ndim - 1))
    j = data.draw(st.integers(-a.ndim, a.ndim - 1))
    x = tensor(a, device, grad=True)
    np.testing.assert_array_equal(x.transpose(i, j).numpy(), np.swapaxes(a, i, j))
    assert minitx.gradcheck(lambda t: minitx.transpose(t, i, j), x)


@given(a=arrays(shapes(max_dims=4)))
def test_transpose_reverses_all_axes_by_default(device, a):
    x = tensor(a, device, grad=True)
    np.testing.assert_array_equal(x.T.numpy(), a.T)
    assert minitx.gradcheck(lambda t: t.transpose(), x)


@given(a=arrays(shapes(max_dims=4)), data=st.data())
def test_permute(device, a, data):
    perm = tuple(data.draw(st.permutations(range(a.ndim))))
    x = tensor(a, device, grad=True)
    np.testing.assert_array_equal(x.permute(*perm).numpy(), a.transpose(perm))
    assert minitx.gradcheck(lambda t: minitx.permute(t, perm), x)


def test_permute_rejects_non_permutation(T):
    with pytest.raises(minitx.ShapeError, match="not a permutation"):
        T(np.ones((2, 3))).permute(0, 0)


@given(data=st.data())
def test_expand(device, data):
    shape = data.draw(shapes(max_dims=3))
    # some axes of the input are size 1, and the target may add leading axes
    small = tuple(data.draw(st.sampled_from([1, n])) for n in shape)
    lead = tuple(data.draw(st.lists(st.integers(1, 3), max_size=2)))
    target = lead + shape
    a = data.draw(arrays(small))
    x = tensor(a, device, grad=True)
    out = x.expand(*target)
    np.testing.assert_array_equal(out.numpy(), np.broadcast_to(a, target))
    assert minitx.gradcheck(lambda t: minitx.expand(t, target), x)
    x.grad = None
    out.sum().backward()       # every input element is used prod(target)/prod(small) times
    np.testing.assert_array_equal(x.grad.numpy(), np.full(small, np.prod(target) / np.prod(small)))


def test_expand_incompatible_raises(T):
    with pytest.raises(minitx.ShapeError, match=r"\(2, 3\).*\(4, 3\)"):
        T(np.ones((2, 3))).expand(4, 3)


@given(a=arrays(shapes(max_dims=3)), data=st.data())
def test_unsqueeze_then_squeeze(device, a, data):
    axis = data.draw(st.integers(-a.ndim - 1, a.ndim))
    x = tensor(a, device, grad=True)
    u = x.unsqueeze(axis)
    np.testing.assert_array_equal(u.numpy(), np.expand_dims(a, axis))
    assert minitx.gradcheck(lambda t: minitx.unsqueeze(t, axis), x)
    np.testing.assert_array_equal(minitx.squeeze(u, axis).numpy(), a)
    assert minitx.gradcheck(lambda t: minitx.squeeze(minitx.unsqueeze(t, axis), axis), x)
    np.testing.assert_array_equal(x.squeeze().numpy(), np.squeeze(a))
    assert minitx.gradcheck(lambda t: t.squeeze(), x)


def test_squeeze_non_unit_axis_raises(T):
    with pytest.raises(minitx.ShapeError, match="size 3, not 1"):
        T(np.ones((2, 3))).squeeze(1)


@given(data=st.data())
def test_concat(device, data):
    shape = data.draw(shapes(max_dims=3))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    sizes = data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    parts = []
    for n in sizes:
        s = list(shape)
        s[axis] = n
        parts.append(data.draw(arrays(tuple(s))))
    xs = [tensor(p, device, grad=True) for p in parts]
    np.testing.assert_array_equal(minitx.concat(xs, axis=axis).numpy(), np.concatenate(parts, axis=axis))
    assert minitx.gradcheck(lambda *ts: minitx.concat(list(ts), axis=axis), *xs)


def test_concat_mismatch_raises(T):
    with pytest.raises(minitx.ShapeError, match=r"\(2, 3\), \(3, 3\)"):
        minitx.concat([T(np.ones((2, 3))), T(np.ones((3, 3)))], axis=1)


@given(data=st.data())
def test_stack(device, data):
    shape = data.draw(shapes(max_dims=3))
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    n = data.draw(st.integers(1, 3))
    parts = [data.draw(arrays(shape)) for _ in range(n)]
    xs = [tensor(p, device, grad=True) for p in parts]
    np.testing.assert_array_equal(minitx.stack(xs, axis=axis).numpy(), np.stack(parts, axis=axis))
    assert minitx.gradcheck(lambda *ts: minitx.stack(list(ts), axis=axis), *xs)


def test_stack_mismatch_raises(T):
    with pytest.raises(minitx.ShapeError, match="equal shapes"):
        minitx.stack([T(np.ones((2, 3))), T(np.ones((3, 2)))])


# ------------------------------------------------------------------ indexing
@given(data=st.data())
def test_getitem_basic_indices(device, data):
    a = data.draw(arrays(shapes(max_dims=3)))
    index = data.draw(hnp.basic_indices(a.shape, allow_newaxis=True, allow_ellipsis=True))
    x = tensor(a, device, grad=True)
    np.testing.assert_array_equal(x[index].numpy(), a[index])
    assert minitx.gradcheck(lambda t: t[index], x)


@given(data=st.data())
def test_getitem_integer_array_with_repeats(device, data):
    a = data.draw(arrays(shapes(min_dims=1, max_dims=3)))
    n = a.shape[0]
    idx = np.array(data.draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=6)))
    x, i = tensor(a, device, grad=True), index_tensor(idx, device)
    np.testing.assert_array_equal(x[i].numpy(), a[idx])
    assert minitx.gradcheck(lambda t: t[i], x)
    # backward scatter-adds: a row picked k times gets k times the gradient
    x.grad = None
    x[i].sum().backward()
    counts = np.bincount(idx % n, minlength=n).astype(float)
    np.testing.assert_array_equal(x.grad.numpy(), np.broadcast_to(counts.reshape((n,) + (1,) * (a.ndim - 1)), a.shape))


@given(data=st.data())
def test_getitem_integer_arrays_mixed_with_slices(device, data):
    a = data.draw(arrays(shapes(min_dims=2, max_dims=3)))
    rows = np.array(data.draw(st.lists(st.integers(0, a.shape[0] - 1), min_size=1, max_size=5)))
    cols = np.array(data.draw(st.lists(st.integers(0, a.shape[1] - 1), min_size=len(rows), max_size=len(rows))))
    x = tensor(a, device, grad=True)
    r, c = index_tensor(rows, device), index_tensor(cols, device)
    np.testing.assert_array_equal(x[r, c].numpy(), a[rows, cols])
    assert minitx.gradcheck(lambda t: t[r, c], x)                 # pairs may repeat
    np.testing.assert_array_equal(x[:, c].numpy(), a[:, cols])
    assert minitx.gradcheck(lambda t: t[:, c], x)
    assert minitx.gradcheck(lambda t: t[..., 0][r], x)


@given(data=st.data())
def test_getitem_boolean_mask(device, data):
    a = data.draw(arrays(shapes(max_dims=3)))
    mask = data.draw(bool_masks(a.shape))
    x, m = tensor(a, device, grad=True), minitx.tensor(mask, device=device)
    np.testing.assert_array_equal(x[m].numpy(), a[mask])
    x[m].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), mask.astype(float))


def test_getitem_out_of_range_raises(T):
    with pytest.raises(minitx.ShapeError, match=r"\(2, 3\)"):
        T(np.ones((2, 3)))[5]


def test_getitem_with_python_list_repeats(T):
    x = T([1.0, 2.0, 3.0], grad=True)
    x[[2, 2, 0]].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 0.0, 2.0])
