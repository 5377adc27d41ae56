"""``Module`` and ``Parameter``: how layers hold their weights, as in PyTorch.

Assigning a ``Parameter`` or a ``Module`` to an attribute registers it, so
``parameters()``, ``named_parameters()``, ``state_dict()``, ``to(device)``,
``train()`` / ``eval()`` find everything without being told.  A parameter
reachable twice (tied embeddings) is listed once, under the first name found.
"""
from collections import OrderedDict

import numpy as np

from .. import backend
from ..autograd.function import no_grad
from ..autograd.tensor import Tensor
from ..errors import ShapeError, StateDictError


class Parameter(Tensor):
    """A Tensor that a Module trains: a leaf with ``requires_grad=True``."""

    def __init__(self, data, requires_grad=True, dtype=None, device=None):
        super().__init__(data, requires_grad=requires_grad, dtype=dtype, device=device)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of every layer and model.

    Subclasses call ``super().__init__()`` first, assign Parameters and
    sub-Modules as attributes, and define ``forward``; calling the module runs
    ``forward`` (and any forward pre-hooks and forward hooks).
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_forward_hooks", [])
        object.__setattr__(self, "_forward_pre_hooks", [])
        object.__setattr__(self, "training", True)

    # ----------------------------------------------------------- registration
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"call super().__init__() in {type(self).__name__}.__init__ before assigning attributes")
        for table in (self._parameters, self._modules, self._buffers):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)

    def __getattr__(self, name):       # only called when normal lookup fails
        for table in ("_parameters", "_modules", "_buffers"):
            d = self.__dict__.get(table)
            if d is not None and name in d:
                return d[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __delattr__(self, name):
        for table in (self._parameters, self._modules, self._buffers):
            if name in table:
                del table[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name, array):
        """Keep an array (not trained, not saved) that moves with ``to(device)``."""
        self._buffers[name] = array

    def register_forward_hook(self, hook):
        """Call ``hook(module, inputs, output)`` after every forward; returns a remover."""
        self._forward_hooks.append(hook)
        return _HookHandle(self._forward_hooks, hook)

    def register_forward_pre_hook(self, hook):
        """Call ``hook(module, inputs)`` before every forward; returns a remover.

        ``inputs`` is the tuple of positional arguments; a hook may return a
        replacement (a tuple, or a single value for a one-argument forward).
        """
        self._forward_pre_hooks.append(hook)
        return _HookHandle(self._forward_pre_hooks, hook)

    # ------------------------------------------------------------- traversal
    def named_modules(self, prefix=""):
        """Yield (dotted name, module) for this module and every descendant, once each."""
        seen, stack = set(), [(prefix, self)]
        while stack:
            name, mod = stack.pop()
            if id(mod) in seen:
                continue
            seen.add(id(mod))
            yield name, mod
            children = [(f"{name}.{n}" if name else n, m) for n, m in mod._modules.items()]
            stack.extend(reversed(children))

    def modules(self):
        """Every module in the tree, this one included."""
        return [m for _, m in self.named_modules()]

    def children(self):
        """The direct sub-modules."""
        return list(self._modules.values())

    def named_parameters(self):
        """Yield (dotted name, Parameter) for every parameter, each once."""
        seen = set()
        for mname, mod in self.named_modules():
            for pname, p in mod._parameters.items():
                if id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self):
        """List of every parameter, each once (tied weights appear once)."""
        return [p for _, p in self.named_parameters()]

    @property
    def num_params(self):
        """Total number of trainable scalars."""
        return int(sum(p.size for p in self.parameters()))

    # ----------------------------------------------------------------- modes
    def train(self, mode=True):
        """Set training mode (dropout active) on this module and all below; returns self."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        """Set evaluation mode (dropout off); returns self."""
        return self.train(False)

    def zero_grad(self):
        """Set every parameter's ``.grad`` to None."""
        for p in self.parameters():
            p.grad = None

    def requires_grad_(self, flag=True):
        """Freeze (False) or unfreeze (True) every parameter; returns self."""
        for p in self.parameters():
            p.requires_grad = bool(flag)
        return self

    # ------------------------------------------------------- devices, dtypes
    def to(self, device=None, dtype=None):
        """Move every parameter and buffer to ``device`` and/or cast floats to ``dtype``; returns self.

        Parameters keep their identity (only ``.data`` changes), so move a model
        before building its optimizer.
        """
        with no_grad():
            for m in self.modules():
                for p in m._parameters.values():
                    p.data = _convert(p.data, device, dtype)
                    p.grad = None
                for name, b in list(m._buffers.items()):
                    m._buffers[name] = _convert(b, device, dtype)
        return self

    def double(self):
        """Cast floating-point parameters to float64 (for gradient checks); returns self."""
        return self.to(dtype=np.float64)

    def float(self):
        """Cast floating-point parameters to float32; returns self."""
        return self.to(dtype=np.float32)

    @property
    def device(self):
        """The device of the first parameter ('cpu' if there is none)."""
        for _, p in self.named_parameters():     # stops at the first one
            return p.device
        return "cpu"

    # ------------------------------------------------------------ state dict
    def state_dict(self):
        """Ordered {dotted name: array} of every parameter (the arrays themselves, not copies)."""
        return OrderedDict((n, p.data) for n, p in self.named_parameters())

    def load_state_dict(self, state, strict=True):
        """Copy arrays from ``state`` into the parameters (to their device and dtype).

        With ``strict`` (default), missing or unexpected keys are an error that
        names them; a shape mismatch is always an error naming the key.
        Returns (missing keys, unexpected keys).
        """
        params = dict(self.named_parameters())
        missing = [k for k in params if k not in state]
        unexpected = [k for k in state if k not in params]
        if strict and (missing or unexpected):
            raise StateDictError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for name, p in params.items():
            if name not in state:
                continue
            value = state[name]
            value = value.data if isinstance(value, Tensor) else value
            if tuple(value.shape) != p.shape:
                raise ShapeError(f"load_state_dict: {name!r} has shape {tuple(value.shape)} in the "
                                 f"state dict but {p.shape} in the model")
        with no_grad():
            for name, p in params.items():
                if name in state:
                    value = state[name]
                    value = value.data if isinstance(value, Tensor) else value
                    p.data[...] = backend.to_device(value, p.device).astype(p.dtype, copy=False)
                    p.bump_version()
        return missing, unexpected

    # --------------------------------------------------------------- calling
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        for hook in self._forward_pre_hooks:
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        out = self.forward(*args, **kwargs)
        for hook in self._forward_hooks:
            result = hook(self, args, out)
            if result is not None:
                out = result
        return out

    def extra_repr(self):
        """One line of constructor arguments shown by ``repr``."""
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, mod in self._modules.items():
            body = repr(mod).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        if len(lines) == 1:
            return lines[0] + ")"
        return "\n".join(lines) + "\n)"


class ModuleList(Module):
    """A list of Modules that registers each one (indexable, iterable)."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        """Add a module at the end."""
        self._modules[str(len(self._modules))] = module
        return self

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self):
        return len(self._modules)


class _HookHandle:
    def __init__(self, hooks, hook):
        self.hooks, self.hook = hooks, hook

    def remove(self):
        """Unregister the hook."""
        if self.hook in self.hooks:
            self.hooks.remove(self.hook)


def _convert(array, device, dtype):
    if device is not None:
        array = backend.to_device(array, device)
    if dtype is not None and array.dtype.kind == "f":
        array = array.astype(dtype)
    return array
