"""gradcheck and directional_gradcheck: they pass right gradients and, just as
important, FAIL on wrong ones with a message a student can act on."""
import re

import numpy as np
import pytest
from hypothesis import given

import minitx
from minitx.testing import arrays, shapes


def tensor(a, device, grad=False, dtype=np.float64):
    return minitx.tensor(np.asarray(a, dtype=dtype), device=device, requires_grad=grad)


class WrongSquare(minitx.Function):
    """x^2 with a backward that forgets the factor 2."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, g):
        return (g * self.x,)                 # wrong: d x^2 = 2x


class WrongSecondInput(minitx.Function):
    """a * b whose gradient for b has the wrong sign."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, g):
        return g * self.b, -g * self.a       # wrong sign for b


class RightSquare(WrongSquare):
    def backward(self, g):
        return (2 * g * self.x,)


def _values(message):
    """The analytic and numeric numbers quoted in a GradcheckError message."""
    found = re.search(r"analytic (\S+), numeric (\S+) ", message)
    assert found, message
    return float(found.group(1)), float(found.group(2))


def test_gradcheck_fails_on_a_wrong_backward_naming_input_and_values(T):
    x = T([3.0], grad=True)
    with pytest.raises(minitx.GradcheckError) as info:
        minitx.gradcheck(WrongSquare.apply, x)
    message = str(info.value)
    assert "input 0" in message
    analytic, numeric = _values(message)
    assert analytic == pytest.approx(3.0) and numeric == pytest.approx(6.0, rel=1e-6)


def test_gradcheck_names_the_second_input(T):
    a, b = T([1.5, -2.0], grad=True), T([0.5, 4.0], grad=True)
    with pytest.raises(minitx.GradcheckError, match=r"input 1 \(shape \(2,\)\)") as info:
        minitx.gradcheck(WrongSecondInput.apply, a, b)
    analytic, numeric = _values(str(info.value))
    assert analytic == pytest.approx(-numeric, rel=1e-6)


@given(a=arrays(shapes(), min_value=0.5, max_value=3.0))
def test_gradcheck_catches_the_wrong_op_on_any_input(device, a):
    x = tensor(a, device, grad=True)
    with pytest.raises(minitx.GradcheckError, match="input 0"):
        minitx.gradcheck(WrongSquare.apply, x)
    with pytest.raises(minitx.GradcheckError, match="directional derivative"):
        minitx.directional_gradcheck(lambda t: WrongSquare.apply(t).sum(), x)
    assert minitx.gradcheck(RightSquare.apply, x)
    assert minitx.directional_gradcheck(RightSquare.apply, x)


def test_directional_gradcheck_reports_both_values(T):
    x = T(np.linspace(1, 2, 12).reshape(3, 4), grad=True)
    with pytest.raises(minitx.GradcheckError) as info:
        minitx.directional_gradcheck(WrongSquare.apply, x)
    analytic, numeric = _values(str(info.value))
    assert abs(analytic - numeric) > 1e-3


def test_directional_gradcheck_passes_on_a_model_sized_expression(T):
    rng = np.random.default_rng(0)
    x = T(rng.standard_normal((4, 8)), grad=True)
    w = T(rng.standard_normal((8, 8)), grad=True)
    assert minitx.directional_gradcheck(lambda a, b: minitx.softmax(minitx.tanh(a @ b)), x, w)


def test_gradcheck_refuses_float32(device):
    x = tensor([1.0, 2.0], device, grad=True, dtype=np.float32)
    with pytest.raises(minitx.DTypeError, match="input 0 has dtype float32.*float64"):
        minitx.gradcheck(minitx.exp, x)
    with pytest.raises(minitx.DTypeError, match="float64"):
        minitx.directional_gradcheck(minitx.exp, x)


def test_gradcheck_needs_an_input_that_requires_grad(T):
    with pytest.raises(ValueError, match="requires_grad"):
        minitx.gradcheck(minitx.exp, T([1.0]))


def test_gradcheck_checks_only_inputs_that_require_grad(T):
    x, c = T([1.0, 2.0], grad=True), T([3.0, 4.0])
    assert minitx.gradcheck(WrongSecondInput.apply, x, c)      # b's wrong gradient is never used


def test_gradcheck_fails_when_the_function_is_undefined(T):
    # log of a negative number: the numeric derivative is NaN, which must not pass
    x = T([-1.0, 2.0], grad=True)
    with np.errstate(invalid="ignore"):
        with pytest.raises(minitx.GradcheckError, match="nan"):
            minitx.gradcheck(minitx.log, x)


def test_gradcheck_fails_on_nan_analytic_gradient(T):
    class NanGrad(RightSquare):
        def backward(self, g):
            return (g * np.nan,)

    with pytest.raises(minitx.GradcheckError, match="NaN"):
        minitx.gradcheck(NanGrad.apply, T([1.0], grad=True))


def test_gradcheck_fails_on_a_missing_gradient(T):
    class NoGrad(RightSquare):
        def backward(self, g):
            return (None,)

    with pytest.raises(minitx.GradcheckError, match="input 0"):
        minitx.gradcheck(NoGrad.apply, T([1.0, 2.0], grad=True))


def test_gradcheck_leaves_inputs_unchanged(T):
    a = np.array([[0.5, -1.0], [2.0, 3.0]])
    x = T(a, grad=True)
    minitx.gradcheck(lambda t: minitx.softmax(t) * t, x)
    minitx.directional_gradcheck(lambda t: minitx.softmax(t) * t, x)
    np.testing.assert_array_equal(x.numpy(), a)


def test_tolerances_are_honoured(T):
    class SlightlyOff(RightSquare):
        def backward(self, g):
            return (2 * g * self.x * (1 + 1e-4),)

    x = T([1.0, 2.0], grad=True)
    assert minitx.gradcheck(SlightlyOff.apply, x)                       # within rtol 1e-3
    with pytest.raises(minitx.GradcheckError):
        minitx.gradcheck(SlightlyOff.apply, x, rtol=1e-6, atol=1e-9)


def test_gradcheck_errors_are_assertion_errors(T):
    with pytest.raises(AssertionError):
        minitx.gradcheck(WrongSquare.apply, T([2.0], grad=True))
