"""Adam (L2 weight decay added to the gradient) and AdamW (decoupled weight decay)."""
import math

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

        if wd != 0.0:
            if self._decoupled:
                arr *= 1.0 - lr * wd              # AdamW: p -= lr * wd * p
            else:
                g = xp.multiply(arr, wd, out=xp.empty_like(arr))   # Adam: g + wd * p
                g += grad
                grad = g

        tmp = xp.multiply(grad, 1.0 - b1, out=xp.empty_like(arr))   # the step's one scratch array
        m *= b1
        m += tmp                                  # m = b1 m + (1 - b1) g
        xp.multiply(grad, grad, out=tmp)
        tmp *= 1.0 - b2
        v *= b2
        v += tmp                                  # v = b2 v + (1 - b2) g^2
        # p -= lr/(1-b1^t) * m / (sqrt(v)/c + eps)  ==  p -= lr c/(1-b1^t) * m / (sqrt(v) + eps c)
        # with c = sqrt(1 - b2^t): the same update with one pass fewer
        c = math.sqrt(1.0 - b2 ** t)
        xp.sqrt(v, out=tmp)
        tmp += eps * c                            # c * denom
        xp.divide(m, tmp, out=tmp)
        tmp *= -lr * c / (1.0 - b1 ** t)
        arr += tmp


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as PyTorch's AdamW.

    Before the Adam update of :class:`Adam` (run with no L2 term) the parameter
    shrinks: ``p = p - lr * weight_decay * p``.  Arguments as :class:`Adam`,
    but ``weight_decay`` defaults to ``1e-2``.
    """

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
