"""Op-level input errors and promotions that must never give a silent wrong result."""
import numpy as np
import pytest

import minitx


def test_int_tensor_plus_float_is_float(device):
    x = minitx.tensor(np.array([1, 2]), device=device)
    y = x + 2.5
    assert y.dtype.kind == "f"
    np.testing.assert_allclose(y.numpy(), [3.5, 4.5])


def test_number_that_does_not_fit_the_dtype(device):
    x = minitx.tensor(np.array([1, 2], dtype=np.uint8), device=device)
    with pytest.raises(minitx.InputError, match="does not fit"):
        x + (-1)


def test_non_numeric_operand(device):
    x = minitx.tensor(np.ones(2), device=device)
    with pytest.raises(minitx.MinitxError):
        x + "abc"


def test_ignored_rows_do_not_leak_nan_into_the_loss(device):
    logits = np.zeros((3, 4))
    logits[1] = np.nan                                 # an ignored row full of NaN
    x = minitx.tensor(logits, device=device, requires_grad=True)
    loss = minitx.cross_entropy(x, np.array([0, -100, 2]))
    assert np.isfinite(loss.item())
    assert loss.item() == pytest.approx(np.log(4))


@pytest.mark.parametrize("fn, words", [
    (lambda x: minitx.cross_entropy(x, np.array(0)), "0-d"),
    (lambda x: minitx.layer_norm(x, minitx.tensor(np.ones(1))), "0-d"),
    (lambda x: minitx.concat([x, x], axis=0), "axis 0 is out of range"),
])
def test_zero_dim_inputs_get_clear_errors(device, fn, words):
    with pytest.raises(minitx.ShapeError, match=words):
        fn(minitx.tensor(1.0, device=device))


@pytest.mark.parametrize("call, words", [
    (lambda x: minitx.cross_entropy(x, np.array([0]), reduction="avg"), "reduction"),
    (lambda x: minitx.cross_entropy(x, np.array([0]), label_smoothing=2.0), "label_smoothing"),
    (lambda x: minitx.dropout(x, p=1.5), "p must be"),
    (lambda x: minitx.gelu(x, approximate="fast"), "approximate"),
])
def test_bad_options_raise_input_error(device, call, words):
    with pytest.raises(minitx.InputError, match=words):
        call(minitx.tensor(np.ones((1, 3)), device=device))
