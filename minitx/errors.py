"""minitx's own error types.

Every error minitx raises on purpose derives from :class:`MinitxError`, and also
from the built-in exception a Python user would expect (``ValueError`` for a bad
shape, ``TypeError`` for a bad dtype, ...), so both ``except MinitxError`` and
``except ValueError`` work.  :func:`op_input_error` turns a NumPy/CuPy failure
inside an op's forward into one of them, naming the op and its inputs.
"""


class MinitxError(Exception):
    """Base class of every error minitx raises deliberately."""


class ShapeError(MinitxError, ValueError):
    """Operands whose shapes do not fit together (the message names both)."""


class DTypeError(MinitxError, TypeError):
    """An array of the wrong dtype (float tokens, integer weights, ...)."""


class DeviceError(MinitxError, RuntimeError):
    """An unknown device, a GPU that is not available, or operands on two devices."""


class GraphError(MinitxError, RuntimeError):
    """Misuse of the autograd graph: freed graph, in-place change, non-scalar backward."""


class GradcheckError(MinitxError, AssertionError):
    """Analytic and finite-difference gradients disagree (see :func:`minitx.autograd.gradcheck`)."""


class CheckpointError(MinitxError, ValueError):
    """A checkpoint file that is missing, truncated, corrupted or does not match the model."""


class StateDictError(MinitxError, KeyError):
    """A state dict whose keys do not match the module's parameters (the message lists them)."""

    def __str__(self):                  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


class InputError(MinitxError, ValueError):
    """An input whose values are invalid: token ids outside the vocabulary, bad options."""


class AnomalyError(MinitxError, RuntimeError):
    """A NaN or Inf found by :func:`minitx.detect_anomaly`; ``op`` names the op, ``phase`` says
    ``"forward"`` or ``"backward"``."""

    def __init__(self, message, op=None, phase=None):
        super().__init__(message)
        self.op, self.phase = op, phase


def check_probability(owner, name, p):
    """Return ``p`` if 0 <= p < 1 (a dropout rate), else raise InputError naming owner and argument."""
    if not 0.0 <= p < 1.0:
        raise InputError(f"{owner}: {name} must be in [0, 1), got {p}")
    return p


def _describe(x):
    """``shape dtype`` of an array-like input, or its Python type."""
    data = x.data if hasattr(x, "creator") else x                   # a Tensor's array
    if hasattr(data, "shape") and hasattr(data, "dtype"):
        device = " on gpu" if type(data).__module__.startswith("cupy") else ""
        return f"{tuple(data.shape)} {data.dtype}{device}"
    return type(x).__name__


def op_input_error(op, inputs, exc):
    """The minitx error to raise when op ``op``'s forward failed with ``exc``, or None to re-raise it.

    Called by ``Function.apply``: a non-Tensor input gives a DTypeError saying so;
    NumPy/CuPy's TypeError (no loop for these dtypes) a DTypeError; their ValueError
    or IndexError (shapes that do not fit, an axis out of range) a ShapeError.  The
    message names the op and every input's shape and dtype.  minitx's own errors and
    anything else pass through unchanged (None).
    """
    if isinstance(exc, DeviceError):        # from get_array_module: add the op and the inputs
        return DeviceError(f"{op}: {exc} (inputs: {', '.join(_describe(t) for t in inputs)})")
    if isinstance(exc, MinitxError) or not isinstance(exc, (ValueError, TypeError, IndexError, AttributeError)):
        return None
    for i, t in enumerate(inputs):
        if not hasattr(t, "creator"):
            return DTypeError(f"{op}: input {i} must be a minitx Tensor, got {type(t).__name__}; "
                              "wrap it with minitx.tensor(...)")
    if isinstance(exc, AttributeError):     # every input is a Tensor: a bug, not bad input
        return None
    what = ", ".join(_describe(t) for t in inputs)
    kind = DTypeError if isinstance(exc, TypeError) else ShapeError
    return kind(f"{op}: {exc} (inputs: {what})")
