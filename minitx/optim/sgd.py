"""Stochastic gradient descent with optional momentum, Nesterov and L2 weight decay."""
from ..errors import InputError
from .optimizer import Optimizer


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's update equations.

    Per step, with gradient ``g`` and parameter ``p``::

        g = g + weight_decay * p                 (if weight_decay)
        b = g            (first step)            (if momentum)
        b = momentum * b + g                     (later steps)
        g = g + momentum * b   if nesterov else  g = b
        p = p - lr * g

    Arguments: ``params`` (Tensors or param-group dicts), ``lr`` (>= 0),
    ``momentum`` (>= 0), ``weight_decay`` (>= 0, L2 added to the gradient),
    ``nesterov`` (needs ``momentum > 0``).  State per param: ``momentum_buffer``.
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      nesterov=nesterov))

    def _check(self, hyper):
        super()._check(hyper)
        if not hyper["momentum"] >= 0.0:
            raise InputError(f"invalid momentum: {hyper['momentum']} (must be >= 0)")
        if hyper["nesterov"] and hyper["momentum"] <= 0.0:
            raise InputError("nesterov=True needs momentum > 0")

    def _update(self, p, grad, state, group):
        xp, arr = p.xp, p.data
        lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
        d, owned = grad, False          # `owned`: d is our temporary, safe to change
        if wd != 0.0:
            d = xp.multiply(arr, wd, out=xp.empty_like(arr))   # g + wd * p, a new array
            d += grad
            owned = True
        if momentum != 0.0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = d if owned else d.copy()
                owned = False           # d is now the buffer itself
            else:
                buf *= momentum
                buf += d
            if group["nesterov"]:
                d_new = xp.multiply(buf, momentum, out=xp.empty_like(arr))
                d_new += d
                d, owned = d_new, True
            else:
                d, owned = buf, False
        if owned:
            d *= lr
            arr -= d
        else:
            arr -= lr * d
