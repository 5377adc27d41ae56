"""``Optimizer``: the base class every optimizer in :mod:`minitx.optim` derives from.

An optimizer owns *param groups*: a list of dicts, each holding ``"params"`` (a
list of Tensors) and that group's hyperparameters (``"lr"`` ...), as in PyTorch.
Per-parameter state (momentum buffers, Adam moments) lives in ``self.state``,
keyed by ``id(param)``.  A subclass implements :meth:`Optimizer._update`, which
changes one parameter's array in place; :meth:`Optimizer.step` loops over the
groups, skips parameters without a gradient and bumps each updated parameter's
version so autograd can tell its value changed.

State dicts follow PyTorch's layout::

    {"state": {index: {"step": int, "exp_avg": ndarray, ...}},
     "param_groups": [{"lr": ..., ..., "params": [index, ...]}]}

where ``index`` numbers the parameters across all groups in order.  Arrays are
saved as NumPy copies and moved to each parameter's device on load.
"""
from .. import backend
from ..autograd.tensor import Tensor
from ..errors import GraphError, InputError, ShapeError


class Optimizer:
    """Base class: holds param groups and per-param state; ``step()`` updates in place.

    ``Optimizer(params, defaults)``: ``params`` is an iterable of Tensors, or of
    dicts ``{"params": [...], "lr": ...}`` (param groups whose own entries
    override ``defaults``).  ``zero_grad()`` sets every ``p.grad`` to None;
    ``step()`` calls ``_update(p, grad_array, state, group)`` for each parameter
    that has a gradient; ``state_dict()`` / ``load_state_dict()`` save and
    restore hyperparameters and state so that a resumed run continues
    bit-identically.  Subclasses check their hyperparameters in ``_check``.
    """

    def __init__(self, params, defaults):
        self._check(defaults)
        self.defaults = dict(defaults)
        self.state = {}            # id(param) -> {name: array or int}
        self.param_groups = []
        params = [params] if isinstance(params, Tensor) else list(params)
        if not params:
            raise InputError("optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)

    # ------------------------------------------------------------ param groups
    def add_param_group(self, group):
        """Add a dict ``{"params": [...], hyperparameter: value ...}``; missing
        hyperparameters are taken from the constructor's defaults."""
        if not isinstance(group, dict):
            raise TypeError(f"a param group must be a dict, got {type(group).__name__}")
        unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
        if unknown:
            raise TypeError(f"unknown hyperparameter(s) in param group: {sorted(unknown)}")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer params must be Tensors, got {type(p).__name__}")
            if id(p) in seen:
                raise InputError("a parameter appears twice in the optimizer's param groups")
            seen.add(id(p))
        full = {**self.defaults, **group, "params": params}
        self._check(full)
        self.param_groups.append(full)

    def _check(self, hyper):
        """Raise ValueError naming the argument for an invalid hyperparameter."""
        lr = hyper.get("lr")
        if lr is not None and not lr >= 0.0:
            raise InputError(f"invalid lr: {lr} (must be >= 0)")
        wd = hyper.get("weight_decay")
        if wd is not None and not wd >= 0.0:
            raise InputError(f"invalid weight_decay: {wd} (must be >= 0)")

    # ------------------------------------------------------------------ steps
    def zero_grad(self):
        """Set every parameter's ``.grad`` to None (the next backward starts fresh)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self):
        """Update every parameter that has a gradient, in place, on its own device."""
        if not self.capturing and backend.stream_is_capturing():
            if self.supports_capture:
                raise GraphError(f"{type(self).__name__}.step() is being recorded in a CUDA graph, but "
                                 "this optimizer was not given to CapturedStep: pass it in "
                                 "CapturedStep(..., optimizers=[opt])")
            raise GraphError(f"{type(self).__name__}.step() cannot be recorded in a CUDA graph "
                             "(its update keeps host-side state); use Adam or AdamW with CapturedStep")
        for i, group in enumerate(self.param_groups):
            self._step_group(i, group)

    def _step_group(self, i, group):
        """Update group ``i``: ``_update`` on each parameter that has a gradient."""
        for p in group["params"]:
            if p.grad is None:
                continue
            self._check_grad(p)
            self._update(p, p.grad.data, self.state.setdefault(id(p), {}), group)
            p.bump_version()

    @staticmethod
    def _check_grad(p):
        if p.grad.shape != p.shape:
            raise ShapeError(f"gradient of shape {p.grad.shape} for a parameter of "
                             f"shape {p.shape}")

    # CUDA graph capture (minitx.cuda_graph.CapturedStep) replays a recorded
    # step; an optimizer that supports it keeps what changes between steps
    # (learning rate, step count) in device memory.
    supports_capture = False
    capturing = False           # True while CapturedStep records a step

    def before_replay(self):
        """Called before each replay of a captured step: copy host-side changes to the device."""

    def after_replay(self):
        """Called after each replay of a captured step: do the step's host-side bookkeeping."""

    def _update(self, p, grad, state, group):
        """Change ``p.data`` in place from ``grad`` (an array: read it, never write it)."""
        raise NotImplementedError

    # ------------------------------------------------------------ state dicts
    def state_dict(self):
        """Hyperparameters and per-param state, with arrays copied to NumPy."""
        state, groups, index = {}, [], 0
        for group in self.param_groups:
            saved = {k: v for k, v in group.items() if k != "params"}
            saved["params"] = list(range(index, index + len(group["params"])))
            for p in group["params"]:
                if self.state.get(id(p)):
                    state[index] = {k: _host_copy(v) for k, v in self.state[id(p)].items()}
                index += 1
            groups.append(saved)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore what :meth:`state_dict` saved; arrays go to each param's device.

        Raises ValueError (naming the group or param index) when the number of
        groups or params, or a state array's shape, does not match.
        """
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise InputError(f"state dict has {len(saved_groups)} param groups, "
                             f"the optimizer has {len(self.param_groups)}")
        params = []
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            unknown = set(saved) - set(self.defaults) - {"params", "initial_lr"}
            if unknown:
                raise InputError(f"param group {i}: unknown hyperparameter(s) {sorted(unknown)} "
                                 f"(a state dict of another optimizer?)")
            if len(saved["params"]) != len(group["params"]):
                raise InputError(f"param group {i}: state dict has {len(saved['params'])} params, "
                                 f"the optimizer has {len(group['params'])}")
            params += group["params"]
        new_state = {}
        for index, entry in state_dict["state"].items():
            index = int(index)
            if not 0 <= index < len(params):
                raise InputError(f"state dict has state for param {index}, but the optimizer "
                                 f"has only {len(params)} params")
            p = params[index]
            new_state[id(p)] = {k: _to_param(v, p, index, k) for k, v in entry.items()}
        merged = [{**group, **{k: tuple(v) if isinstance(v, list) else v   # JSON made betas a list
                               for k, v in saved.items() if k != "params"}}
                  for saved, group in zip(saved_groups, self.param_groups)]
        for group in merged:
            self._check(group)
        for group, new in zip(self.param_groups, merged):
            group.update(new)
        self.state = new_state

    def __repr__(self):
        lines = [type(self).__name__ + "("]
        for i, g in enumerate(self.param_groups):
            hyper = ", ".join(f"{k}={v}" for k, v in g.items() if k != "params")
            lines.append(f"  group {i}: {len(g['params'])} params, {hyper}")
        return "\n".join(lines) + "\n)"


def _host_copy(value):
    """A NumPy copy of a state array (an explicit host transfer on the GPU); ints as is."""
    if not hasattr(value, "shape"):
        return value
    out = backend.to_numpy(value)
    return out.copy() if out is value else out


def _to_param(value, p, index, name):
    """A fresh array for state entry ``name`` of param ``index``, on p's device and dtype."""
    if not hasattr(value, "shape"):
        return value
    if tuple(value.shape) != tuple(p.shape):
        raise InputError(f"param {index}: saved state {name!r} has shape {tuple(value.shape)}, "
                         f"the param has shape {tuple(p.shape)}")
    if backend.device_of(value) != p.device:
        value = backend.to_device(value, p.device)
    return p.xp.array(value, dtype=p.dtype)   # always a copy: never alias the caller's dict

