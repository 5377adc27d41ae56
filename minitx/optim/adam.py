"""Adam (L2 weight decay added to the gradient) and AdamW (decoupled weight decay)."""
import math

from .. import backend
from ..autograd.ops import gpu_kernels
from ..errors import GraphError, InputError
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
    supports_capture = True      # its flat groups keep lr and t on the device

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay))
        self._flats = {}          # group index -> FlatGroup

    def _check(self, hyper):
        super()._check(hyper)
        betas = hyper["betas"]
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise InputError(f"invalid betas: {betas} (need two values in [0, 1))")
        if not hyper["eps"] > 0.0:
            raise InputError(f"invalid eps: {hyper['eps']} (must be > 0)")

    def _step_group(self, i, group):
        """Update group ``i``, through flat buffers when it can.

        A group whose parameters all have gradients, share one dtype and one
        step count is updated through :class:`FlatGroup`: one fused kernel on
        the GPU, one blocked NumPy pass on the CPU.  Any other group takes the
        per-parameter update of :class:`Optimizer`; a group with no gradient
        at all is skipped.
        """
        if all(p.grad is None for p in group["params"]):
            return
        flat = self._flat_group(i, group)
        if flat is None and self.capturing:
            raise GraphError(
                f"Adam: param group {i} cannot be updated inside a CUDA graph capture: every "
                "parameter needs a gradient, one dtype, one step count, and an eager step "
                "before the capture (CapturedStep's warm-up) to lay out its flat buffers")
        if flat is None:
            super()._step_group(i, group)
            return
        t = self.state[id(group["params"][0])]["step"] + 1
        flat.step(group, t, decoupled=self._decoupled, write_hyper=not self.capturing)
        if not self.capturing:               # a recorded step is counted by after_replay
            self._count_step(group)

    def _count_step(self, group):
        for p in group["params"]:
            self.state[id(p)]["step"] += 1
            p.bump_version()

    def _flat_group(self, i, group):
        """This group's FlatGroup (made or remade as needed), or None if it cannot be flat."""
        params = group["params"]
        if any(p.grad is None for p in params):
            return None
        for p in params:
            self._check_grad(p)
        states = [self.state.setdefault(id(p), {}) for p in params]
        if len({p.dtype for p in params}) != 1 or len({p.device for p in params}) != 1:
            return None
        if len({st.get("step", 0) for st in states}) != 1:
            return None
        flat = self._flats.get(i)
        if flat is None or not flat.current(params, states):
            if self.capturing:          # a new layout would be copied at every replay
                return None
            flat = self._flats[i] = FlatGroup(params, states)
        return flat

    def before_replay(self):
        """Write each flat group's lr and step number to the device (called by CapturedStep).

        Raises GraphError when a recorded group's parameters or state were
        replaced since the capture (``load_state_dict``, ``module.to``, a new
        ``param.data``): the graph would go on updating the old buffers.
        """
        for i, group in enumerate(self.param_groups):
            flat = self._flats.get(i)
            if flat is None:
                continue
            states = [self.state.get(id(p), {}) for p in group["params"]]
            if not flat.current(group["params"], states):
                raise GraphError(f"Adam: param group {i}'s parameters or optimizer state were replaced "
                                 "after the CUDA graph was recorded; make a new CapturedStep")
            flat.write_hyper(group["lr"], states[0]["step"] + 1)

    def after_replay(self):
        """Count the step a replayed graph made (called by CapturedStep)."""
        for i, group in enumerate(self.param_groups):
            if i in self._flats:
                self._count_step(group)

    def _update(self, p, grad, state, group):
        xp, arr = p.xp, p.data
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(arr)
            state["exp_avg_sq"] = xp.zeros_like(arr)
        state["step"] += 1
        _adam_arrays(xp, (arr, grad, state["exp_avg"], state["exp_avg_sq"]), lr, b1, b2, eps, wd,
                     state["step"], self._decoupled)


class FlatGroup:
    """A param group's parameters and Adam moments as views into three flat arrays.

    Making one copies every parameter into the flat array ``p`` (its moments
    into ``m`` and ``v``) and points ``param.data``, ``state["exp_avg"]`` and
    ``state["exp_avg_sq"]`` at views of them, so one update covers the whole
    group.  The gradients are gathered each step: on the GPU into the flat
    ``g``; on the CPU one cache-sized block at a time (``plan``), so no
    full-size gradient copy goes through memory.  ``hyper`` = [lr, t] sits on the parameters' device; the GPU
    update kernel reads it, so a captured CUDA graph sees the values written
    before each replay (the CPU update takes lr and t as arguments).  If a view is replaced (a
    new ``param.data``, a loaded optimizer state), :meth:`current` says so and
    the optimizer makes a new FlatGroup from the new arrays.
    """

    def __init__(self, params, states):
        xp = params[0].xp
        sizes = [p.data.size for p in params]
        total = sum(sizes)
        self.p, self.m, self.v = (xp.zeros(total, dtype=params[0].dtype) for _ in range(3))
        self.g = xp.zeros(total, dtype=params[0].dtype) if xp is not backend.np else None
        self.plan = _gather_plan(sizes) if xp is backend.np else None
        self.views, self.parts, off = [], [], 0
        for p, st, n in zip(params, states, sizes):
            part = slice(off, off + n)
            self.parts.append(part)
            off += n
            self.p[part] = p.data.reshape(-1)
            if "exp_avg" in st:
                self.m[part] = st["exp_avg"].reshape(-1)
                self.v[part] = st["exp_avg_sq"].reshape(-1)
            st.setdefault("step", 0)
            p.data = self.p[part].reshape(p.shape)
            st["exp_avg"] = self.m[part].reshape(p.shape)
            st["exp_avg_sq"] = self.v[part].reshape(p.shape)
            self.views.append((p.data, st["exp_avg"], st["exp_avg_sq"]))
        self.xp = xp
        self.hyper = xp.zeros(2, dtype=backend.np.float64)     # [lr, t]

    def current(self, params, states):
        """True while every parameter and moment is still the view this group made."""
        return len(params) == len(self.views) and all(
            p.data is a and st.get("exp_avg") is b and st.get("exp_avg_sq") is c
            for p, st, (a, b, c) in zip(params, states, self.views))

    def write_hyper(self, lr, t):
        """Write lr and the step number t to ``hyper`` (two tiny fills on the GPU, no sync)."""
        self.hyper[0] = lr
        self.hyper[1] = t

    def step(self, group, t, decoupled, write_hyper=True):
        """Adam step number ``t`` over the whole group, in place.

        The gradients are gathered into ``g`` on the GPU, block by block into scratch on the CPU.

        ``write_hyper=False`` while a CUDA graph is recorded: a write recorded
        in the graph would put that call's lr and t back at every replay, so
        they are written before each replay instead (``Adam.before_replay``).
        """
        xp = self.xp
        if write_hyper:                                   # read by the GPU kernel (CPU: 2 scalars)
            self.write_hyper(group["lr"], t)
        b1, b2 = group["betas"]
        wd = group["weight_decay"]
        if xp is backend.np:
            self._step_cpu([a.grad.data.reshape(-1) for a in group["params"]],
                           _adam_constants(group["lr"], b1, b2, group["eps"], wd, t, decoupled))
            return
        for a, part in zip(group["params"], self.parts):   # one copy each: CuPy's many-array concatenate
            self.g[part] = a.grad.data.reshape(-1)          # sends a pointer table from the host
        l2, dwd = (0.0, wd) if decoupled else (wd, 0.0)
        gpu_kernels.adam_update()(self.g, self.hyper, b1, b2, group["eps"], l2, dwd, self.p, self.m, self.v)

    def _step_cpu(self, grads, constants):
        """Block by block: copy the gradients' pieces of the block into scratch, then update it."""
        np = backend.np
        g_blk = np.empty(self.plan[0][0].stop - self.plan[0][0].start, dtype=self.p.dtype)
        tmp = np.empty_like(g_blk)
        for b, pieces in self.plan:
            n = b.stop - b.start                          # the last block may be shorter
            for i, src, dst in pieces:
                g_blk[dst] = grads[i][src]
            _adam_block(np, self.p[b], g_blk[:n], self.m[b], self.v[b], tmp[:n], *constants)


def _gather_plan(sizes):
    """[(block slice of the flat arrays, [(parameter index, source slice, slice in the block)])].

    Blocks are ``backend.cache_blocks`` of the flat arrays; a parameter may span several.
    """
    starts = [0]
    for n in sizes:
        starts.append(starts[-1] + n)
    plan = []
    for b in backend.cache_blocks(starts[-1], backend.np):
        lo, hi = b.start, min(b.stop, starts[-1])
        pieces = [(i, slice(max(lo, s) - s, min(hi, e) - s), slice(max(lo, s) - lo, min(hi, e) - lo))
                  for i, (s, e) in enumerate(zip(starts, starts[1:])) if s < hi and e > lo]
        plan.append((slice(lo, hi), pieces))
    return plan


def _adam_arrays(xp, arrays, lr, b1, b2, eps, wd, t, decoupled):
    """The Adam update of arrays (p, g, m, v) at step t (block by block on the CPU)."""
    arr = arrays[0]
    constants = _adam_constants(lr, b1, b2, eps, wd, t, decoupled)
    if all(a.flags.c_contiguous for a in arrays):           # flat views, updated block by block
        arrays = tuple(a.reshape(-1) for a in arrays)
        blocks = backend.cache_blocks(arr.size, xp)
    else:
        blocks = [Ellipsis]
    tmp = xp.empty_like(arrays[0][blocks[0]])
    for b in blocks:
        p_b, g_b, m_b, v_b = (a[b] for a in arrays)
        scratch = tmp[:p_b.size].reshape(p_b.shape)          # the last block may be shorter
        _adam_block(xp, p_b, g_b, m_b, v_b, scratch, *constants)


def _adam_constants(lr, b1, b2, eps, wd, t, decoupled):
    """(b1, b2, eps c, step, decay, l2) for ``_adam_block`` at step t, c = sqrt(1 - b2^t)."""
    c = math.sqrt(1.0 - b2 ** t)
    step = -lr * c / (1.0 - b1 ** t)
    decay = 1.0 - lr * wd if decoupled else 1.0
    l2 = 0.0 if decoupled else wd
    return b1, b2, eps * c, step, decay, l2


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
