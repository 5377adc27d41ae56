"""Learning-rate schedules.

Each schedule is a pure function of the step number (``warmup_cosine_factor``
...), easy to test and plot, plus an :class:`LRScheduler` subclass that writes
``base_lr * factor(step)`` into every param group's ``"lr"``.

Step counting follows PyTorch: constructing a scheduler sets the lr for step 0
(step 1 for :class:`NoamLR`, whose formula is undefined at 0); call
``scheduler.step()`` after each ``optimizer.step()`` to move to the next step::

    sched = WarmupCosine(opt, warmup_steps=100, total_steps=1000)
    for batch in data:
        loss = ...; opt.zero_grad(); loss.backward(); opt.step(); sched.step()

With a linear warmup from 0 the very first update therefore runs at lr 0, as
with Hugging Face's ``get_cosine_schedule_with_warmup``.
"""
import math

from ..errors import InputError
from .optimizer import Optimizer


# ------------------------------------------------------------ pure factors
def warmup_factor(step, warmup_steps):
    """Linear warmup: ``step / warmup_steps`` while ``step < warmup_steps``, then 1."""
    return step / warmup_steps if step < warmup_steps else 1.0


def warmup_cosine_factor(step, warmup_steps, total_steps, min_lr_ratio=0.0):
    """Linear warmup 0 -> 1 over ``warmup_steps``, then half a cosine from 1 down to
    ``min_lr_ratio`` at ``total_steps``, then ``min_lr_ratio`` for ever."""
    if step < warmup_steps:
        return warmup_factor(step, warmup_steps)
    if step >= total_steps:
        return min_lr_ratio
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_inverse_sqrt_factor(step, warmup_steps):
    """Linear warmup 0 -> 1 over ``warmup_steps``, then ``sqrt(warmup_steps / step)``."""
    if step < warmup_steps:
        return warmup_factor(step, warmup_steps)
    return math.sqrt(warmup_steps / step)


def noam_lr(step, d_model, warmup_steps, factor=1.0):
    """The absolute lr of "Attention Is All You Need" (needs ``step >= 1``):
    ``factor * d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)``."""
    return factor * d_model ** -0.5 * min(step ** -0.5, step * warmup_steps ** -1.5)


def _check_int(name, value, minimum):
    if int(value) != value or value < minimum:
        raise InputError(f"invalid {name}: {value} (must be an integer >= {minimum})")
    return int(value)


# -------------------------------------------------------------- schedulers
class LRScheduler:
    """Base class: sets each group's ``lr = base_lr * factor(step)``.

    ``LRScheduler(optimizer)`` remembers each group's current lr as its base
    (stored as ``group["initial_lr"]``, as PyTorch does, so a second scheduler on
    the same optimizer starts from the same base) and applies step 0 at once.
    ``step()`` advances one step; ``get_last_lr()`` is the list of lrs last set;
    ``lr_at(step)`` computes them without changing anything;
    ``state_dict()`` / ``load_state_dict()`` save and restore the step.
    Subclasses implement ``factor(step)``.
    """

    first_step = 0

    def __init__(self, optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"expected a minitx.optim.Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_step = self.first_step
        self._apply()

    def factor(self, step):
        """The multiplier of the base lr at ``step``."""
        raise NotImplementedError

    def lr_at(self, step):
        """The lr of every param group at ``step`` (a list; nothing is changed)."""
        f = self.factor(step)
        return [base * f for base in self.base_lrs]

    def _apply(self):
        self._last_lr = self.lr_at(self.last_step)
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr

    def step(self):
        """Advance one step and write the new lr into the optimizer's param groups."""
        self.last_step += 1
        self._apply()

    def get_last_lr(self):
        """The lrs (one per param group) set by the last ``step()`` or by construction."""
        return list(self._last_lr)

    def state_dict(self):
        """``{"last_step": int, "base_lrs": [float, ...]}``."""
        return {"last_step": self.last_step, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state_dict):
        """Restore the step and base lrs, and set the optimizer's lrs to match."""
        self.last_step = int(state_dict["last_step"])
        self.base_lrs = list(state_dict["base_lrs"])
        self._apply()


class ConstantLR(LRScheduler):
    """Constant lr (factor 1), after an optional linear warmup from 0 over
    ``warmup_steps`` (default 0: no warmup).  Unlike PyTorch's ``ConstantLR``
    there is no reduced-lr phase."""

    def __init__(self, optimizer, warmup_steps=0):
        self.warmup_steps = _check_int("warmup_steps", warmup_steps, 0)
        super().__init__(optimizer)

    def factor(self, step):
        """The multiplier of the base lr at ``step``."""
        return warmup_factor(step, self.warmup_steps)


class WarmupCosine(LRScheduler):
    """Linear warmup from 0 to the base lr over ``warmup_steps``, then cosine decay to
    ``min_lr_ratio * base_lr`` at ``total_steps`` (> warmup_steps), constant after;
    see :func:`warmup_cosine_factor`."""

    def __init__(self, optimizer, warmup_steps, total_steps, min_lr_ratio=0.0):
        self.warmup_steps = _check_int("warmup_steps", warmup_steps, 0)
        self.total_steps = _check_int("total_steps", total_steps, self.warmup_steps + 1)
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise InputError(f"invalid min_lr_ratio: {min_lr_ratio} (must be in [0, 1])")
        self.min_lr_ratio = float(min_lr_ratio)
        super().__init__(optimizer)

    def factor(self, step):
        """The multiplier of the base lr at ``step``."""
        return warmup_cosine_factor(step, self.warmup_steps, self.total_steps, self.min_lr_ratio)


class WarmupInverseSqrt(LRScheduler):
    """Linear warmup from 0 over ``warmup_steps`` (>= 1), then decay as
    ``base_lr * sqrt(warmup_steps / step)``; see :func:`warmup_inverse_sqrt_factor`."""

    def __init__(self, optimizer, warmup_steps):
        self.warmup_steps = _check_int("warmup_steps", warmup_steps, 1)
        super().__init__(optimizer)

    def factor(self, step):
        """The multiplier of the base lr at ``step``."""
        return warmup_inverse_sqrt_factor(step, self.warmup_steps)


class NoamLR(LRScheduler):
    """The schedule of "Attention Is All You Need":
    ``lr = factor * d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)``.

    This is an *absolute* lr: the optimizer's own ``lr`` is ignored and
    overwritten.  Counting starts at step 1 (the formula is 0 / undefined at
    step 0), so the first ``optimizer.step()`` uses ``noam_lr(1, ...)``.
    """

    first_step = 1

    def __init__(self, optimizer, d_model, warmup_steps, factor=1.0):
        self.d_model = _check_int("d_model", d_model, 1)
        self.warmup_steps = _check_int("warmup_steps", warmup_steps, 1)
        if not factor > 0.0:
            raise InputError(f"invalid factor: {factor} (must be > 0)")
        self.scale = float(factor)
        super().__init__(optimizer)

    def factor(self, step):
        """Noam's absolute lr at ``step`` (the base lr is not used)."""
        return noam_lr(step, self.d_model, self.warmup_steps, self.scale)

    def lr_at(self, step):
        """Noam's lr at ``step`` for every param group (base lrs are ignored)."""
        return [self.factor(step)] * len(self.base_lrs)
