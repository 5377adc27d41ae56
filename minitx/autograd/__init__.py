"""minitx's reverse-mode automatic differentiation.

Read in this order: ``tensor.py`` (what a Tensor records), ``function.py`` (how
an op records itself), ``engine.py`` (how backward walks the graph), then the
ops in ``ops/`` and ``gradcheck.py`` (how gradients are verified).
"""
from .function import Function, enable_grad, is_grad_enabled, no_grad
from .gradcheck import directional_gradcheck, gradcheck
from .tensor import Tensor

__all__ = ["Tensor", "Function", "no_grad", "enable_grad", "is_grad_enabled",
           "gradcheck", "directional_gradcheck"]
