"""The gradients' global norm, and clipping by it or by value, on device, without a host sync.

Both clipping functions give each clipped parameter a *new* gradient array
(``p.grad.data = ...``) instead of writing into the old one, which the caller
may still hold (a hook's result, a saved reference).
"""
from .. import backend
from ..autograd.tensor import Tensor
from ..errors import InputError


def _with_grads(params):
    params = [params] if isinstance(params, Tensor) else list(params)
    return [p for p in params if p.grad is not None]


def grad_norm(params, norm_type=2.0):
    """The global ``norm_type``-norm of all gradients together, as a 0-d Tensor on their device.

    ``params``: a Tensor or an iterable of Tensors (those without a gradient
    are skipped); ``norm_type`` > 0, or ``float('inf')`` for max-abs.  Nothing
    is read back to the host (``.item()`` does that).
    """
    norm_type = float(norm_type)
    if not norm_type > 0.0:
        raise InputError(f"invalid norm_type: {norm_type} (must be > 0 or inf)")
    params = _with_grads(params)
    if not params:
        return Tensor(0.0)
    xp = params[0].xp
    norms = xp.empty(len(params), dtype=xp.result_type(*[p.grad.dtype for p in params]))
    for i, p in enumerate(params):                 # one device write each: no host round trip
        norms[i] = _norm(p.grad.data.ravel(), norm_type, xp)
    return Tensor(_norm(norms, norm_type, xp))     # norm of per-tensor norms = global norm


def clip_grad_norm_(params, max_norm, norm_type=2.0):
    """Scale gradients so that their global norm is at most ``max_norm``; return the norm.

    The global norm is the ``norm_type``-norm (``float('inf')`` for max-abs) of
    all gradients taken together.  Every gradient is multiplied by
    ``min(1, max_norm / (total + 1e-6))``, computed on the device, so no value
    is copied to the host.  ``params``: a Tensor or an iterable of Tensors
    (those without a gradient are skipped).  Returns the norm *before*
    clipping as a 0-d Tensor on the gradients' device (``.item()`` to read it).
    """
    if not max_norm >= 0.0:
        raise InputError(f"invalid max_norm: {max_norm} (must be >= 0)")
    params = _with_grads(params)                   # a list: an iterator is read once
    total = grad_norm(params, norm_type)
    if not params:
        return total
    coef = params[0].xp.minimum(1.0, max_norm / (total.data + 1e-6))
    for p in params:
        g = p.grad.data
        p.grad.data = g * coef.astype(g.dtype)
    return total


def _norm(x, norm_type, xp):
    """The norm_type-norm of a 1-D array as a 0-d device array.  On the GPU from elementwise
    ops and sums (no cuBLAS call through CuPy, so a CUDA graph can capture it); on the CPU
    the 2-norm is one BLAS dot product (no squared copy)."""
    if x.size == 0:
        return xp.zeros((), dtype=x.dtype)
    if norm_type == float("inf"):
        return xp.abs(x).max()
    if norm_type == 2.0:
        return xp.sqrt(xp.dot(x, x) if xp is backend.np else (x * x).sum())
    return (xp.abs(x) ** norm_type).sum() ** (1.0 / norm_type)


def clip_grad_value_(params, clip_value):
    """Clamp every gradient element to ``[-clip_value, clip_value]`` (new arrays, on device).

    ``params``: a Tensor or an iterable of Tensors (those without a gradient are
    skipped); ``clip_value`` >= 0.  Returns None.
    """
    if not clip_value >= 0.0:
        raise InputError(f"invalid clip_value: {clip_value} (must be >= 0)")
    for p in _with_grads(params):
        p.grad.data = p.xp.clip(p.grad.data, -clip_value, clip_value)
