"""Every differentiable op, as a plain function of Tensors.

Each family lives in its own file (elementwise, activations, reduce, shape, linalg,
nn, norm, attention, rows); a
file holds the ``Function`` subclasses and, below them, these wrappers.
"""
from .activations import gelu, relu, sigmoid, tanh
from .attention import scaled_dot_product_attention
from .elementwise import (add, astype, clone, div, exp, log, masked_fill, mul, neg, pow, sqrt,
                          sub, where)
from .linalg import linear, matmul
from .nn import cross_entropy, dropout, embedding, log_softmax, masked_softmax, softmax
from .norm import layer_norm
from .reduce import logsumexp, max, mean, sum
from .rows import put_rows, take_rows
from .shape import (concat, expand, getitem, permute, reshape, squeeze, stack,
                    transpose, unsqueeze)

__all__ = [
    "add", "astype", "clone", "div", "exp", "gelu", "log", "masked_fill", "mul", "neg",
    "pow", "relu", "sigmoid", "sqrt", "sub", "tanh", "where", "linear", "matmul", "cross_entropy",
    "dropout", "embedding", "layer_norm", "log_softmax", "masked_softmax", "softmax",
    "scaled_dot_product_attention", "logsumexp", "max", "mean", "sum", "concat", "expand", "getitem", "permute",
    "put_rows", "reshape", "squeeze", "stack", "take_rows", "transpose", "unsqueeze",
]
