"""Elementwise ops: arithmetic, unary functions, casts, where / masked_fill
(the activations live in ``activations.py``).

Broadcasting ops return gradients of the broadcast shape; ``Function`` sums them
back to each input's shape.  Each backward line states the derivative it uses.
"""
from ..function import Function
from ..tensor import DEFAULT_FLOAT, Tensor
from ... import backend
from ...errors import DeviceError, DTypeError, InputError


def as_tensor(x, like):
    """Wrap a Python scalar or array as a constant Tensor on ``like``'s device.

    A Python number takes ``like``'s dtype, except that a float next to an
    integer or boolean tensor is float32 (``int_tensor + 2.5`` must not add 2).
    """
    if isinstance(x, Tensor):
        return x
    xp = like.xp
    if isinstance(x, (int, float, bool)):
        dtype = like.dtype
        if isinstance(x, float) and dtype.kind in "iub":
            dtype = DEFAULT_FLOAT
        elif dtype.kind in "iu" and not isinstance(x, bool) and not xp.can_cast(xp.min_scalar_type(x), dtype):
            raise InputError(f"the number {x} does not fit the tensor's dtype {dtype}")
        return Tensor._from_op(xp.full((), x, dtype=dtype), None)   # a fill: no host-to-device copy
    try:
        return Tensor._from_op(xp.asarray(x), None)
    except (TypeError, ValueError) as e:
        raise DTypeError(f"cannot use a {type(x).__name__} as a tensor operand ({e})") from None


# ---------------------------------------------------------------- arithmetic
class Add(Function):
    """a + b (broadcasting)."""
    saves_inputs = False

    def forward(self, a, b):
        return a + b

    def backward(self, g):
        return g, g                          # d(a+b)/da = d(a+b)/db = 1

    backward_graph = backward                # only Tensor-safe operations: works on Tensors too


class Sub(Function):
    """a - b (broadcasting)."""
    saves_inputs = False

    def forward(self, a, b):
        return a - b

    def backward(self, g):
        return g, (-g if self.needs_grad[1] else None)   # d(a-b)/db = -1

    backward_graph = backward


class Mul(Function):
    """a * b (broadcasting)."""
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, g):
        ga = g * self.b if self.needs_grad[0] else None   # d(ab)/da = b
        gb = g * self.a if self.needs_grad[1] else None   # d(ab)/db = a
        return ga, gb

    def backward_graph(self, g):
        a, b = self.inputs
        return (g * b if self.needs_grad[0] else None), (g * a if self.needs_grad[1] else None)


class Div(Function):
    """a / b (broadcasting)."""
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, g):
        ga = g / self.b if self.needs_grad[0] else None                  # 1/b
        gb = -g * self.a / (self.b * self.b) if self.needs_grad[1] else None  # -a/b^2
        return ga, gb

    def backward_graph(self, g):
        a, b = self.inputs
        ga = g / b if self.needs_grad[0] else None
        gb = -g * a / (b * b) if self.needs_grad[1] else None
        return ga, gb


class Neg(Function):
    """-x."""
    saves_inputs = False

    def forward(self, a):
        return -a

    def backward(self, g):
        return (-g,)

    backward_graph = backward


class Pow(Function):
    """``x ** p`` for a constant scalar exponent ``p``."""

    def forward(self, x, p):
        self.x, self.p = x, p
        return x ** p

    def backward(self, g):
        if self.p == 0:
            return (g * 0,)                                # x^0 = 1: no gradient (not 0 * 0^-1 = NaN)
        return (g * self.p * self.x ** (self.p - 1),)   # d x^p = p x^(p-1)

    def backward_graph(self, g):
        if self.p == 0:
            return (g * 0.0,)
        return (g * (self.p * self.inputs[0] ** (self.p - 1)),)


# ------------------------------------------------------------------- unary
class Exp(Function):
    """e ** x."""
    saves_output = True
    saves_inputs = False

    def forward(self, x):
        self.y = self.xp.exp(x)
        return self.y

    def backward(self, g):
        return (g * self.y,)                  # d e^x = e^x

    def backward_graph(self, g):
        return (g * exp(self.inputs[0]),)     # e^x recomputed as an op: differentiable


class Log(Function):
    """Natural logarithm."""
    def forward(self, x):
        self.x = x
        return self.xp.log(x)

    def backward(self, g):
        return (g / self.x,)                  # d log x = 1/x

    def backward_graph(self, g):
        return (g / self.inputs[0],)


class Sqrt(Function):
    """Square root."""
    saves_output = True
    saves_inputs = False

    def forward(self, x):
        self.y = self.xp.sqrt(x)
        return self.y

    def backward(self, g):
        return (g * 0.5 / self.y,)            # d sqrt x = 1/(2 sqrt x)

    def backward_graph(self, g):
        return (g / (2.0 * sqrt(self.inputs[0])),)


class Astype(Function):
    """Cast to another dtype (the gradient is cast back)."""
    saves_inputs = False

    def forward(self, x, dtype):
        self.src = x.dtype
        return x.astype(dtype)

    def backward(self, g):
        return (g.astype(self.src),)

    def backward_graph(self, g):
        return (astype(g, self.src),)


class Clone(Function):
    """A copy with its own memory."""
    saves_inputs = False

    def forward(self, x):
        return x.copy()

    def backward(self, g):
        return (g,)

    backward_graph = backward


# --------------------------------------------------------- selection by mask
class Where(Function):
    """``where(cond, a, b)``; ``cond`` is a constant boolean array."""
    saves_inputs = False

    def forward(self, a, b, cond):
        self.cond = cond
        return self.xp.where(cond, a, b)

    def backward(self, g):
        zero = g.dtype.type(0)
        ga = self.xp.where(self.cond, g, zero) if self.needs_grad[0] else None
        gb = self.xp.where(self.cond, zero, g) if self.needs_grad[1] else None
        return ga, gb

    def backward_graph(self, g):
        ga = where(self.cond, g, 0.0) if self.needs_grad[0] else None
        gb = where(self.cond, 0.0, g) if self.needs_grad[1] else None
        return ga, gb


class MaskedFill(Function):
    """``x`` with ``value`` where ``mask`` is True (mask broadcasts against x)."""
    saves_inputs = False

    def forward(self, x, mask, value):
        self.mask = mask
        return self.xp.where(mask, x.dtype.type(value), x)

    def backward(self, g):
        return (self.xp.where(self.mask, g.dtype.type(0), g),)   # filled slots get no gradient

    def backward_graph(self, g):
        return (masked_fill(g, self.mask, 0.0),)


# ------------------------------------------------------------ user wrappers
def add(a, b):
    """``a + b`` with broadcasting."""
    a, b = _pair(a, b)
    return Add.apply(a, b)


def sub(a, b):
    """``a - b`` with broadcasting."""
    a, b = _pair(a, b)
    return Sub.apply(a, b)


def mul(a, b):
    """``a * b`` with broadcasting."""
    a, b = _pair(a, b)
    return Mul.apply(a, b)


def div(a, b):
    """``a / b`` with broadcasting."""
    a, b = _pair(a, b)
    return Div.apply(a, b)


def neg(x):
    """``-x``."""
    return Neg.apply(x)


def pow(x, exponent):
    """``x ** exponent`` for a scalar exponent."""
    if isinstance(exponent, Tensor):
        raise TypeError("pow: the exponent must be a Python number; use exp(b * log(a)) for tensor exponents")
    return Pow.apply(x, p=exponent)


def exp(x):
    """Elementwise e**x."""
    return Exp.apply(x)


def log(x):
    """Elementwise natural logarithm."""
    return Log.apply(x)


def sqrt(x):
    """Elementwise square root."""
    return Sqrt.apply(x)


def astype(x, dtype):
    """``x`` converted to ``dtype`` (differentiable between float dtypes)."""
    return Astype.apply(x, dtype=dtype)


def clone(x):
    """A differentiable copy of ``x`` with its own memory."""
    return Clone.apply(x)


def where(cond, a, b):
    """Elements of ``a`` where ``cond`` is True, else of ``b`` (all broadcast)."""
    cond = cond.data if isinstance(cond, Tensor) else cond
    if isinstance(a, Tensor):
        b = as_tensor(b, a)
    else:
        a = as_tensor(a, b)
    _check_bool("where", "cond", cond, a)
    return Where.apply(a, b, cond=cond)


def masked_fill(x, mask, value):
    """``x`` with ``value`` wherever the boolean ``mask`` (broadcast to x) is True."""
    mask = mask.data if isinstance(mask, Tensor) else mask
    _check_bool("masked_fill", "mask", mask, x)
    return MaskedFill.apply(x, mask=mask, value=value)


def _check_bool(op, name, arr, like):
    if getattr(arr, "dtype", None) is None or arr.dtype.kind != "b":
        raise DTypeError(f"{op}: {name} must be a boolean array, got {getattr(arr, 'dtype', type(arr).__name__)}")
    where = backend.device_of(arr)
    if isinstance(like, Tensor) and where != like.device:
        raise DeviceError(f"{op}: {name} is on {where} but the tensor is on {like.device}; move it "
                          f"first with minitx.backend.to_device({name}, {like.device!r})")


def _pair(a, b):
    if isinstance(a, Tensor):
        return a, as_tensor(b, a)
    return as_tensor(a, b), b
