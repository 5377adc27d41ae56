"""Optimizers, gradient clipping and learning-rate schedules (PyTorch conventions).

Typical loop::

    opt = AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    sched = WarmupCosine(opt, warmup_steps=100, total_steps=5000)
    for batch in data:
        opt.zero_grad()
        loss = model(batch); loss.backward()
        clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); sched.step()

Every update runs in place on the parameters' own device (NumPy or CuPy).
"""
from .adam import Adam, AdamW
from .clip import clip_grad_norm_, clip_grad_value_, grad_norm
from .optimizer import Optimizer
from .schedules import ConstantLR, LRScheduler, NoamLR, WarmupCosine, WarmupInverseSqrt
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "clip_grad_norm_", "clip_grad_value_", "grad_norm",
           "LRScheduler", "ConstantLR", "WarmupCosine", "WarmupInverseSqrt", "NoamLR"]
