"""``detect_anomaly()``: find the first op whose output or gradient turns NaN or Inf.

    with minitx.detect_anomaly():
        loss = model(src, tgt, mask=mask)
        loss.backward()        # AnomalyError: Log's backward returned NaN ... (backward)

While the context is active, ``Function.apply`` checks every op's output after
its forward, and ``Function.run_backward`` checks the gradient flowing into each
op and every gradient it returns.  The first non-finite value raises
:class:`~minitx.errors.AnomalyError` naming the op (its Function class), the
phase (``"forward"`` or ``"backward"``) and the line that ran the op's forward.
Token ids passed as GPU arrays, which are otherwise not range-checked (that
would need a host sync), are checked too.

Each check reads one boolean back from the device, so anomaly mode is slow: use
it to debug a run, not to train.  When it is off, the cost is one flag test per
op and per backward node.
"""
import linecache
import os
import sys

from ..errors import AnomalyError


class AnomalyMode:
    """Whether anomaly checks run (read by ``Function.apply`` and ``run_backward``)."""
    enabled = False


def is_anomaly_enabled():
    """True inside ``detect_anomaly()``."""
    return AnomalyMode.enabled


class detect_anomaly:
    """Context manager (and decorator) turning NaN/Inf checks on (or off, with ``enabled=False``).

    Raises AnomalyError at the first op whose forward output, or whose
    gradient in the backward pass, holds NaN or Inf.  Nests: leaving restores
    the previous setting.
    """

    def __init__(self, enabled=True):
        self.enabled = bool(enabled)

    def __enter__(self):
        self.prev = AnomalyMode.enabled
        AnomalyMode.enabled = self.enabled
        return self

    def __exit__(self, *exc):
        AnomalyMode.enabled = self.prev

    def __call__(self, func):
        def wrapper(*args, **kwargs):
            with detect_anomaly(self.enabled):
                return func(*args, **kwargs)
        wrapper.__name__, wrapper.__doc__ = func.__name__, func.__doc__
        return wrapper


# What usually makes each op produce NaN/Inf (shown in the error message).
_HINTS = {
    "Log": "log of zero or of a negative number",
    "Div": "division by zero (0/0 is NaN)",
    "Sqrt": "square root of a negative number (or its gradient at 0)",
    "Exp": "overflow: exp of a large input",
    "Pow": "a negative base with a fractional exponent, or 0 to a negative power",
    "CrossEntropy": "on the GPU a target id outside [0, V) gives NaN (it is not checked there)",
    "Astype": "a value too large for the target dtype",
}
_AUTOGRAD_DIR = os.path.dirname(os.path.abspath(__file__))


def _non_finite(xp, a):
    """'NaN' or 'Inf' when the float array ``a`` holds one, else None (reads one bool from the device)."""
    if a is None or not hasattr(a, "dtype") or a.dtype.kind not in "fc":
        return None
    if bool(xp.isfinite(a).all()):
        return None
    return "NaN" if bool(xp.isnan(a).any()) else "Inf"


def _call_site(depth=3):
    """The innermost ``depth`` frames outside minitx/autograd, as 'file:line in name' (innermost first)."""
    sites, frame = [], sys._getframe(2)
    while frame is not None and len(sites) < depth:
        path = frame.f_code.co_filename
        if not os.path.abspath(path).startswith(_AUTOGRAD_DIR):
            line = linecache.getline(path, frame.f_lineno).strip()
            sites.append(f"{os.path.relpath(path) if not path.startswith('<') else path}:"
                         f"{frame.f_lineno} in {frame.f_code.co_name}" + (f": {line}" if line else ""))
        frame = frame.f_back
    return "\n    ".join(sites) or "(unknown)"


def _hint(name):
    return _HINTS.get(name, "overflow (values too large: check the inputs and the learning rate) "
                            "or an invalid operation")


def check_forward(fn, out, inputs):
    """Raise AnomalyError when op ``fn``'s output ``out`` holds NaN/Inf; remember its call site."""
    kind = _non_finite(fn.xp, out)
    if kind is None:
        if fn.inputs:                       # recorded: keep the call site for backward messages
            fn.anomaly_site = _call_site()
        return
    msg = f"detect_anomaly: {fn.name} produced {kind} in the forward pass (output {tuple(out.shape)} {out.dtype}). "
    bad = [i for i, t in enumerate(inputs) if _non_finite(fn.xp, t.data)]
    if bad:
        msg += (f"Its input {bad[0]} already held non-finite values: they came from outside the "
                "checked ops (data, a parameter, or a value computed before detect_anomaly was entered). ")
    else:
        msg += f"Its inputs were finite, so {fn.name} made it; likely cause: {_hint(fn.name)}. "
    raise AnomalyError(msg + f"Called from:\n    {_call_site()}", op=fn.name, phase="forward")


def check_backward(fn, grad_out, grads):
    """Raise AnomalyError when the gradient into ``fn`` or one it returns holds NaN/Inf."""
    site = getattr(fn, "anomaly_site", "(the forward ran before detect_anomaly was entered)")
    kind = _non_finite(fn.xp, grad_out)
    if kind is not None:
        raise AnomalyError(
            f"detect_anomaly: the gradient flowing into the output of {fn.name} holds {kind} in the "
            "backward pass: the gradient given to backward(), or a sum of gradients that overflowed. "
            f"The op's forward ran at:\n    {site}", op=fn.name, phase="backward")
    for i, g in enumerate(grads):
        kind = _non_finite(fn.xp, g)
        if kind is not None:
            raise AnomalyError(
                f"detect_anomaly: {fn.name}'s backward returned {kind} in the gradient of its input {i} "
                f"(shape {tuple(g.shape)}) in the backward pass, from a finite incoming gradient; "
                f"likely cause: {_hint(fn.name)}. The op's forward ran at:\n    {site}",
                op=fn.name, phase="backward")
