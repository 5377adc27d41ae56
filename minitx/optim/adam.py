"""Adam (L2 weight decay added to the gradient) and AdamW (decoupled weight decay)."""
import math

from .. import backend
from ..errors import InputError
from .optimizer import Optimizer


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), PyTorch's update equations.

    Per step ``t`` (1, 2, ...), with gradient ``g`` and parameter ``p``::

        g = g + weight_decay * p                          (L2, if weight_decay)
        m = b1 * m + (1 - b1) * g                         (exp_avg)
        v = b2 * v + (1 - b2) * g * g                     (exp_avg_sq)
        denom = sqrt(v) / sqrt(1 - b2**t) + eps
        p = p - lr / (1 - b1**t) * m / denom

    Arguments: ``params`` (Tensors or param-group dicts), ``lr`` (>= 0),
    ``betas`` = (b1, b2) each in [0, 1), ``eps`` (> 0), ``weight_decay`` (>= 0).
    State per param: ``step`` (int), ``exp_avg``, ``exp_avg_sq`` (param's dtype).
    """

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay))

    def _check(self, hyper):
        super()._check(hyper)
        betas = hyper["betas"]
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise InputError(f"invalid betas: {betas} (need two values in [0, 1))")
        if not hyper["eps"] > 0.0:
            raise InputError(f"invalid eps: {hyper['eps']} (must be > 0)")

    def _update(self, p, grad, state, group):
        xp, arr = p.xp, p.data
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(arr)
            state["exp_avg_sq"] = xp.zeros_like(arr)
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]

        c = math.sqrt(1.0 - b2 ** t)
        step = -lr * c / (1.0 - b1 ** t)
        decay = 1.0 - lr * wd if self._decoupled else 1.0
        l2 = 0.0 if self._decoupled else wd
        arrays = (arr, grad, m, v)
        if all(a.flags.c_contiguous for a in arrays):       # flat views, updated block by block
            arrays = tuple(a.reshape(-1) for a in arrays)
            blocks = backend.cache_blocks(arr.size, xp)
        else:
            blocks = [Ellipsis]
        tmp = xp.empty_like(arrays[0][blocks[0]])
        for b in blocks:
            p_b, g_b, m_b, v_b = (a[b] for a in arrays)
            scratch = tmp[:p_b.size].reshape(p_b.shape)      # the last block may be shorter
            _adam_block(xp, p_b, g_b, m_b, v_b, scratch, b1, b2, eps * c, step, decay, l2)


def _adam_block(xp, p, g, m, v, tmp, b1, b2, eps_c, step, decay, l2):
    """The Adam update of one block, in place in p, m and v (tmp: scratch of p's shape).

    With c = sqrt(1 - b2^t):  p -= lr/(1-b1^t) * m / (sqrt(v)/c + eps)
    is computed as            p += step * m / (sqrt(v) + eps c),  step = -lr c/(1-b1^t)
    (the same update, one pass fewer).
    """
    if decay != 1.0:
        p *= decay                                # AdamW: p -= lr * wd * p
    if l2:
        g = p * l2 + g                            # Adam: g + wd * p (a new array)
    xp.multiply(g, 1.0 - b1, out=tmp)
    m *= b1
    m += tmp                                      # m = b1 m + (1 - b1) g
    xp.multiply(g, g, out=tmp)
    tmp *= 1.0 - b2
    v *= b2
    v += tmp                                      # v = b2 v + (1 - b2) g^2
    xp.sqrt(v, out=tmp)
    tmp += eps_c                                  # c * denom
    xp.divide(m, tmp, out=tmp)
    tmp *= step
    p += tmp


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as PyTorch's AdamW.

    Before the Adam update of :class:`Adam` (run with no L2 term) the parameter
    shrinks: ``p = p - lr * weight_decay * p``.  Arguments as :class:`Adam`,
    but ``weight_decay`` defaults to ``1e-2``.
    """

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
