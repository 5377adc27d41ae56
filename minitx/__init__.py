"""minitx: a small, readable deep-learning framework over NumPy (CPU) and CuPy (GPU).

Top-level names: ``Tensor`` and the tensor constructors, every op as a function
(``minitx.matmul``, ``minitx.softmax`` ...), ``no_grad``, ``manual_seed``, and the
sub-packages ``minitx.nn``, ``minitx.optim``, ``minitx.autograd``, ``minitx.testing``.
"""
from . import backend
from .autograd import (Function, Tensor, detect_anomaly, directional_gradcheck, enable_grad, gradcheck,
                       is_anomaly_enabled, is_grad_enabled, no_grad)
from .autograd.ops import *  # noqa: F401,F403  (the op functions)
from .autograd.ops import __all__ as _ops_all
from .backend import gpu_available, manual_seed
from .creation import (arange, full, ones, ones_like, rand, randint, randn, tensor, zeros,
                       zeros_like)
from .errors import (AnomalyError, CheckpointError, DeviceError, DTypeError, GradcheckError, GraphError,
                     InputError, MinitxError, ShapeError, StateDictError)

__version__ = "0.1.0"

__all__ = ["Tensor", "Function", "no_grad", "enable_grad", "is_grad_enabled", "gradcheck",
           "directional_gradcheck", "manual_seed", "gpu_available", "backend", "tensor",
           "zeros", "ones", "full", "randn", "rand", "randint", "arange", "zeros_like",
           "ones_like", "MinitxError", "ShapeError", "DTypeError", "DeviceError",
           "GraphError", "GradcheckError", "CheckpointError", "InputError", "AnomalyError", "StateDictError",
           "detect_anomaly", "is_anomaly_enabled"] + list(_ops_all)

from . import nn, optim  # noqa: E402
from .checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
