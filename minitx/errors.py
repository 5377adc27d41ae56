"""minitx's own error types.

Every error minitx raises on purpose derives from :class:`MinitxError`, and also
from the built-in exception a Python user would expect (``ValueError`` for a bad
shape, ``TypeError`` for a bad dtype, ...), so both ``except MinitxError`` and
``except ValueError`` work.
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


class InputError(MinitxError, ValueError):
    """An input whose values are invalid: token ids outside the vocabulary, bad options."""
