"""Devices, array modules, transfers, seeding, and tensor construction defaults."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitx
from minitx import backend


# -------------------------------------------------------------------- devices
@pytest.mark.parametrize("name,expected", [
    ("cpu", "cpu"), ("CPU", "cpu"), (None, "cpu"),
    ("gpu", "gpu"), ("cuda", "gpu"), ("CUDA", "gpu"), ("cuda:0", "gpu"), ("gpu:1", "gpu"),
])
def test_normalize_device_aliases(name, expected):
    assert backend.normalize_device(name) == expected


@pytest.mark.parametrize("name", ["tpu", "cuda0", "", "mps"])
def test_unknown_device_raises_device_error(name):
    with pytest.raises(minitx.DeviceError, match=f"unknown device '{name}'.*'cpu', 'gpu' or 'cuda'"):
        backend.normalize_device(name)


def test_unknown_device_in_constructors():
    with pytest.raises(minitx.DeviceError, match="unknown device 'tpu'"):
        minitx.tensor([1.0], device="tpu")
    with pytest.raises(minitx.DeviceError, match="unknown device"):
        minitx.zeros(2, device="tpu")
    with pytest.raises(minitx.DeviceError, match="unknown device"):
        minitx.tensor([1.0]).to("tpu")


def test_device_errors_are_also_runtime_errors():
    with pytest.raises(RuntimeError):
        backend.normalize_device("tpu")


@pytest.mark.skipif(minitx.gpu_available(), reason="a GPU is available here")
@pytest.mark.parametrize("make", [
    lambda: minitx.tensor([1.0], device="gpu"),
    lambda: minitx.randn(2, device="cuda"),
    lambda: minitx.zeros(2, device="gpu"),
    lambda: minitx.tensor([1.0]).to("gpu"),
    lambda: backend.array_module("gpu"),
])
def test_asking_for_the_gpu_without_one_says_what_to_install(make):
    with pytest.raises(minitx.DeviceError) as info:
        make()
    message = str(info.value)
    assert "not available" in message
    # either CuPy is missing (say which wheel to install) or the CUDA device is (say what to check)
    assert "pip install cupy" in message or "nvidia-smi" in message


def test_cpu_array_module_is_numpy():
    assert backend.array_module("cpu") is np
    assert backend.get_array_module(np.ones(2), np.zeros(3)) is np
    assert backend.device_of(np.ones(2)) == "cpu"


@pytest.mark.gpu
def test_mixing_devices_raises():
    a = minitx.tensor([1.0, 2.0], device="cpu", requires_grad=True)
    b = minitx.tensor([1.0, 2.0], device="gpu")
    with pytest.raises(minitx.DeviceError, match="different devices.*to\\('cpu'\\)"):
        a + b
    with pytest.raises(minitx.DeviceError, match="different devices"):
        minitx.matmul(b, a)


@pytest.mark.gpu
def test_round_trip_between_devices():
    a = minitx.tensor(np.arange(4.0), device="cpu")
    g = a.to("gpu")
    assert g.device == "gpu" and backend.is_gpu_array(g.data)
    back = g.to("cpu")
    assert back.device == "cpu" and isinstance(back.data, np.ndarray)
    np.testing.assert_array_equal(back.numpy(), np.arange(4.0))


# ------------------------------------------------------------- tensor basics
def test_tensor_lives_on_the_device_under_test(device):
    t = minitx.tensor([1.0, 2.0], device=device)
    assert t.device == device
    assert backend.device_of(t.data) == device
    assert isinstance(t.numpy(), np.ndarray)


def test_to_cpu(device):
    t = minitx.tensor(np.arange(6.0).reshape(2, 3), device=device)
    c = t.to("cpu")
    assert c.device == "cpu" and isinstance(c.data, np.ndarray)
    np.testing.assert_array_equal(c.numpy(), np.arange(6.0).reshape(2, 3))
    assert t.to(device) is t                      # nothing to do: the same tensor
    assert t.to("cuda" if device == "gpu" else "cpu") is t


def test_to_dtype_is_differentiable(T):
    x = T([1.0, 2.0], grad=True)
    y = x.to(dtype=np.float32)
    assert y.dtype == np.float32 and y.requires_grad
    (y * 3).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])
    assert x.double() is x
    assert x.long().dtype == np.int64


@pytest.mark.parametrize("data", [1.5, [1.0, 2.0], [[1, 2.5]], 0.0])
def test_python_floats_default_to_float32(device, data):
    assert minitx.tensor(data, device=device).dtype == np.float32


def test_dtypes_are_kept_or_chosen(device):
    assert minitx.tensor(np.ones(2), device=device).dtype == np.float64          # float64 array kept
    assert minitx.tensor(np.ones(2, np.float32), device=device).dtype == np.float32
    assert minitx.tensor([1, 2], device=device).dtype == np.int64
    assert minitx.tensor([True], device=device).dtype == np.bool_
    assert minitx.tensor([1.0], dtype=np.float64, device=device).dtype == np.float64
    assert minitx.tensor(np.ones(2), dtype=np.float32, device=device).dtype == np.float32


def test_tensor_copies_its_input(device):
    a = np.array([1.0, 2.0, 3.0])
    t = minitx.tensor(a, device=device)
    t[0] = 7.0
    assert a[0] == 1.0                            # the caller's array is untouched
    u = minitx.tensor(t)
    u[1] = 9.0
    np.testing.assert_array_equal(t.numpy(), [7.0, 2.0, 3.0])


def test_item_and_tolist(T):
    assert T([2.5]).item() == 2.5
    assert T([[1.0, 2.0]]).tolist() == [[1.0, 2.0]]
    with pytest.raises(ValueError, match="one element"):
        T([1.0, 2.0]).item()


@pytest.mark.parametrize("make,dtype", [
    (lambda d: minitx.zeros(2, 3, device=d), np.float32),
    (lambda d: minitx.ones((2, 3), device=d), np.float32),
    (lambda d: minitx.full((2, 3), 7.0, device=d), np.float32),
    (lambda d: minitx.randn(2, 3, device=d), np.float32),
    (lambda d: minitx.rand(2, 3, dtype=np.float64, device=d), np.float64),
    (lambda d: minitx.zeros(2, 3, dtype=np.float64, device=d), np.float64),
])
def test_constructors_shape_dtype_device(device, make, dtype):
    t = make(device)
    assert t.shape == (2, 3) and t.dtype == dtype and t.device == device and not t.requires_grad


def test_constructor_values(device):
    np.testing.assert_array_equal(minitx.full((2,), 7.0, device=device).numpy(), [7.0, 7.0])
    np.testing.assert_array_equal(minitx.arange(4, device=device).numpy(), [0, 1, 2, 3])
    u = minitx.rand(1000, device=device).numpy()
    assert 0 <= u.min() and u.max() < 1
    r = minitx.randint(0, 5, (1000,), device=device)
    assert r.dtype == np.int64 and r.device == device and set(np.unique(r.numpy())) <= set(range(5))
    z = minitx.zeros_like(minitx.ones(2, 3, device=device))
    assert z.shape == (2, 3) and z.device == device and (z.numpy() == 0).all()
    assert minitx.ones(3, device=device, requires_grad=True).requires_grad


# ----------------------------------------------------------------- randomness
def test_manual_seed_makes_draws_repeatable(device):
    def draw():
        x = minitx.ones(50, device=device)
        return (minitx.randn(3, 4, device=device).numpy(), minitx.rand(5, device=device).numpy(),
                minitx.randint(0, 100, (6,), device=device).numpy(),
                minitx.dropout(x, p=0.5).numpy())

    minitx.manual_seed(1234)
    first = draw()
    minitx.manual_seed(1234)
    second = draw()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    minitx.manual_seed(4321)
    third = draw()
    assert not np.array_equal(first[0], third[0])
    assert not np.array_equal(first[3], third[3])


def test_successive_draws_differ(device):
    minitx.manual_seed(0)
    assert not np.array_equal(minitx.randn(8, device=device).numpy(), minitx.randn(8, device=device).numpy())


def test_rng_state_round_trip():
    minitx.manual_seed(7)
    state = backend.get_rng_state()
    a = minitx.randn(5).numpy()
    backend.set_rng_state(state)
    np.testing.assert_array_equal(minitx.randn(5).numpy(), a)


# ---------------------------------------------------------------- transfers
def test_to_numpy_and_to_device_on_cpu():
    a = np.arange(3.0)
    assert backend.to_numpy(a) is a
    assert backend.to_device(a, "cpu") is a


def test_scatter_add_sums_repeated_indices(device):
    t = minitx.zeros(4, dtype=np.float64, device=device)
    idx = minitx.tensor(np.array([1, 1, 3, 1]), device=device)
    vals = minitx.tensor(np.array([1.0, 2.0, 3.0, 4.0]), device=device)
    backend.scatter_add(t.data, idx.data, vals.data)
    np.testing.assert_array_equal(t.numpy(), [0.0, 7.0, 0.0, 3.0])


# ---------------------------------------------------------------- add_rows
@pytest.mark.parametrize("one_hot_max", [backend.ONE_HOT_MAX_ROWS, 0], ids=["one-hot", "reduceat"])
@given(data=st.data())
def test_add_rows_matches_add_at(one_hot_max, data):
    """Both ways of summing (one-hot matmul, add.reduceat) give np.add.at's result."""
    V = data.draw(st.integers(1, 300), label="V")
    N = data.draw(st.integers(0, 400), label="N")
    D = data.draw(st.integers(1, 5), label="D")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    dtype = data.draw(st.sampled_from([np.float32, np.float64]), label="dtype")
    g = np.random.default_rng(seed)
    rows = g.integers(0, V, N).astype(data.draw(st.sampled_from([np.int32, np.int64]), label="rows dtype"))
    values = g.standard_normal((N, D)).astype(dtype)
    target = g.standard_normal((V, D)).astype(dtype)
    expected = target.copy()
    np.add.at(expected, rows, values)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(backend, "ONE_HOT_MAX_ROWS", one_hot_max)
        out = backend.add_rows(target, rows, values)
    assert out is target
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(target, expected, rtol=tol, atol=tol)


@pytest.mark.filterwarnings("error")          # the one-hot matmul's 0 * inf must not warn either
def test_add_rows_keeps_non_finite_values_in_their_rows():
    """An inf or nan value reaches only its own row (0 * inf in a one-hot matmul would not)."""
    assert backend.ONE_HOT_MAX_ROWS >= 3      # so the one-hot path runs first
    rows = np.array([0, 2, 1, 2])
    values = np.array([[1.0, np.inf], [2.0, 3.0], [np.nan, 4.0], [5.0, 6.0]])
    target = np.zeros((4, 2))
    backend.add_rows(target, rows, values)
    np.testing.assert_array_equal(target[0], [1.0, np.inf])
    assert np.isnan(target[1, 0]) and target[1, 1] == 4.0
    np.testing.assert_array_equal(target[2:], [[7.0, 9.0], [0.0, 0.0]])


@pytest.mark.parametrize("distinct", [backend.ONE_HOT_MAX_ROWS, backend.ONE_HOT_MAX_ROWS + 1])
def test_add_rows_at_the_one_hot_limit(distinct):
    """Exactly at the limit (one-hot matmul) and one past it (reduceat): np.add.at's result."""
    g = np.random.default_rng(distinct)
    rows = np.concatenate([np.arange(distinct), g.integers(0, distinct, 50)])
    values = g.standard_normal((rows.size, 3)).astype(np.float32)
    target = np.zeros((distinct + 2, 3), dtype=np.float32)
    expected = target.copy()
    np.add.at(expected, rows, values)
    np.testing.assert_allclose(backend.add_rows(target, rows, values), expected, rtol=1e-5, atol=1e-5)
