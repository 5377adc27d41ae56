"""Checking analytic gradients against central finite differences.

``gradcheck(fn, *inputs)`` perturbs every element of every input that requires
grad by +-eps, and compares ``(L(x + eps) - L(x - eps)) / 2 eps`` with the
gradient backward computed.  ``L`` is ``fn``'s output, or for a non-scalar
output its dot product with fixed random weights (so every output element is
checked at once).  Use float64 inputs: float32 finite differences are too
coarse to tell a right gradient from a slightly wrong one.

``directional_gradcheck`` compares one directional derivative instead: two
evaluations of ``fn`` however large the inputs, for checks of whole models.
"""
import numpy as np

from .. import backend
from ..errors import DTypeError, GradcheckError, InputError
from .function import no_grad


def _checked_inputs(inputs):
    checked = [i for i, t in enumerate(inputs) if getattr(t, "requires_grad", False)]
    if not checked:
        raise InputError("gradcheck: no input has requires_grad=True, nothing to check")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise DTypeError(
                f"gradcheck: input {i} has dtype {inputs[i].dtype}; use float64 "
                "inputs (tensor.double()) so finite differences are accurate"
            )
    return checked


class _Objective:
    """Maps ``fn``'s output to a scalar: the output itself or <output, R>."""

    def __init__(self, fn, inputs, seed):
        self.fn, self.inputs, self.weights = fn, inputs, None
        self.seed = seed

    def __call__(self):
        out = self.fn(*self.inputs)
        if out.size == 1:
            return out.sum()
        if self.weights is None:
            w = np.random.default_rng(self.seed).standard_normal(out.shape)
            self.weights = out.xp.asarray(w, dtype=out.dtype)
        return (out * self.weights).sum()

    def value(self):
        with no_grad():
            return float(backend.to_numpy(self().data))


def _analytic(objective, inputs, checked):
    for i in checked:
        inputs[i].grad = None
    loss = objective()
    if loss.requires_grad:
        loss.backward()
    return [backend.to_numpy(inputs[i].grad.data) if inputs[i].grad is not None
            else np.zeros(inputs[i].shape) for i in checked]


def gradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """Assert that ``fn``'s gradients w.r.t. ``inputs`` match finite differences.

    ``fn(*inputs)`` must return a Tensor.  Every input with
    ``requires_grad=True`` (float64) is checked element by element.  Returns
    True; raises GradcheckError naming the input, the worst element and both
    values when ``|analytic - numeric| > atol + rtol * |numeric|`` anywhere.
    """
    checked = _checked_inputs(inputs)
    objective = _Objective(fn, inputs, seed)
    analytic = _analytic(objective, inputs, checked)
    for k, i in enumerate(checked):
        x = inputs[i]
        numeric = np.zeros(x.shape)
        for flat in range(x.size):
            idx = np.unravel_index(flat, x.shape)
            orig = x.data[idx].item()
            x.data[idx] = orig + eps
            plus = objective.value()
            x.data[idx] = orig - eps
            minus = objective.value()
            x.data[idx] = orig
            numeric[idx] = (plus - minus) / (2 * eps)
        _compare(f"input {i} (shape {x.shape})", analytic[k], numeric, atol, rtol)
    return True


def directional_gradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """Check the derivative of ``fn`` along one random direction in all checked inputs.

    Cheap for large inputs (two extra evaluations).  Returns True or raises
    GradcheckError with the analytic and numeric directional derivatives.
    """
    checked = _checked_inputs(inputs)
    objective = _Objective(fn, inputs, seed)
    analytic = _analytic(objective, inputs, checked)
    gen = np.random.default_rng(seed + 1)
    dirs = [gen.standard_normal(inputs[i].shape) for i in checked]
    origs = [inputs[i].data.copy() for i in checked]

    def shifted(sign):
        for i, d, o in zip(checked, dirs, origs):
            inputs[i].data[...] = o + sign * eps * inputs[i].xp.asarray(d)
        return objective.value()

    plus, minus = shifted(+1), shifted(-1)
    for i, o in zip(checked, origs):
        inputs[i].data[...] = o
    numeric = (plus - minus) / (2 * eps)
    exact = float(sum((a * d).sum() for a, d in zip(analytic, dirs)))
    _compare("directional derivative", np.array([exact]), np.array([numeric]), atol, rtol)
    return True


def _compare(what, analytic, numeric, atol, rtol):
    if analytic.shape != numeric.shape or np.isnan(analytic).any():
        raise GradcheckError(f"gradcheck: {what}: analytic gradient has shape {analytic.shape} "
                             f"or NaNs; expected finite values of shape {numeric.shape}")
    err = np.abs(analytic - numeric)
    bound = atol + rtol * np.abs(numeric)
    bad = ~(err <= bound)          # NaN (a non-finite numeric derivative) counts as bad
    if bad.any():
        worst = np.unravel_index(np.argmax(err - bound), err.shape)
        raise GradcheckError(
            f"gradcheck failed for {what} at index {tuple(int(i) for i in worst)}: "
            f"analytic {analytic[worst]:.8g}, numeric {numeric[worst]:.8g} "
            f"(|diff| {err[worst]:.3g} > atol + rtol*|numeric| = {bound[worst]:.3g}); "
            f"{int(bad.sum())} of {bad.size} elements disagree"
        )
