"""minitx's reverse-mode automatic differentiation.

Read in this order: ``tensor.py`` (what a Tensor records), ``function.py`` (how
an op records itself), ``engine.py`` (how backward walks the graph), then the
ops in ``ops/`` and ``gradcheck.py`` (how gradients are verified).  To look
inside: ``graph.py`` (DOT / text pictures of a graph), ``hooks.py``
(``register_hook``, ``retain_grad``), ``higher_order.py`` (``create_graph``,
``grad``); docs/autograd.md walks through all of it.
"""
from .anomaly import detect_anomaly, is_anomaly_enabled
from .function import Function, enable_grad, is_grad_enabled, no_grad
from .gradcheck import directional_gradcheck, gradcheck
from .tensor import Tensor
from . import graph  # noqa: E402  (after Tensor: graph export and tracing)
from .higher_order import grad  # noqa: E402

__all__ = ["Tensor", "Function", "no_grad", "enable_grad", "is_grad_enabled",
           "gradcheck", "directional_gradcheck", "detect_anomaly", "is_anomaly_enabled",
           "graph", "grad"]
