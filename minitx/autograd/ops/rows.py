"""Row gather and scatter: the two ops behind skipping padded positions.

    take_rows(x, index)        x (R, F)  -> x[index]                  (N, F)
    put_rows(h, index, rows)   h (N, F)  -> zeros (rows, F), h at index

``index`` is an integer array (N,) of distinct row numbers, so each op's
backward is the other one: no gradient ever needs adding up (unlike
``getitem`` with an integer array, which must allow repeats).
"""
import numbers

from ... import backend
from ...backend import get_array_module
from ...errors import InputError, ShapeError
from ..function import Function


def _put(h, index, rows):
    """(rows, F) zeros with the rows of ``h`` (N, F) at ``index``."""
    xp = get_array_module(h)
    out = xp.empty((rows,) + h.shape[1:], dtype=h.dtype)
    out[index] = h
    if index.shape[0] < rows:                       # zero only the other rows: one write per row
        rest = xp.ones(rows, dtype=bool)
        rest[index] = False
        out[rest] = 0
    return out


class TakeRows(Function):
    """``x[index]`` along the first axis, for distinct row numbers ``index``."""
    saves_inputs = False

    def forward(self, x, index):
        self.index, self.rows = index, x.shape[0]
        return self.xp.take(x, index, axis=0)                 # (R, F) -> (N, F)

    def backward(self, g):
        return (_put(g, self.index, self.rows),)               # (N, F) -> (R, F)

    def backward_graph(self, g):
        return (PutRows.apply(g, index=self.index, rows=self.rows),)


class PutRows(Function):
    """Zeros of ``rows`` rows with the rows of ``h`` placed at ``index``."""
    saves_inputs = False

    def forward(self, h, index, rows):
        self.index = index
        return _put(h, index, rows)                            # (N, F) -> (rows, F)

    def backward(self, g):
        return (self.xp.take(g, self.index, axis=0),)          # (rows, F) -> (N, F)

    def backward_graph(self, g):
        return (TakeRows.apply(g, index=self.index),)


def _check(name, arg, x, index, rows):
    """``x`` at least 1-D; ``index`` a 1-D integer array of distinct row numbers in [0, rows).

    The values are checked on host arrays only: on the GPU the check would cost a sync.
    """
    if x.ndim == 0:
        raise ShapeError(f"{name}: {arg} must have at least one axis (the rows), got a 0-d tensor")
    if getattr(index, "ndim", None) != 1 or index.dtype.kind not in "iu":
        raise InputError(f"{name}: index must be a 1-D integer array of row numbers, got "
                         f"{getattr(index, 'dtype', type(index).__name__)} of shape {getattr(index, 'shape', '?')}")
    if backend.is_gpu_array(index) or not index.size:
        return
    lo, hi = int(index.min()), int(index.max())
    if lo < 0 or hi >= rows:
        raise InputError(f"{name}: index holds row {lo if lo < 0 else hi}, outside [0, {rows}); "
                         "negative row numbers are not allowed")
    seen = backend.np.zeros(rows, dtype=bool)
    seen[index] = True
    if int(seen.sum()) != index.size:
        raise InputError(f"{name}: index repeats a row number; it must hold distinct rows "
                         "(use getitem for gathers with repeats)")


def take_rows(x, index):
    """Rows ``index`` (N,) of ``x`` (R, ...) -> (N, ...); the row numbers must be distinct."""
    _check("take_rows", "x", x, index, x.shape[0] if x.ndim else 0)
    return TakeRows.apply(x, index=index)


def put_rows(h, index, rows):
    """(rows, ...) zeros with row i of ``h`` (N, ...) at row ``index[i]``; distinct row numbers."""
    if isinstance(rows, bool) or not isinstance(rows, numbers.Integral) or rows < 0:
        raise InputError(f"put_rows: rows (the number of output rows) must be an integer >= 0, got {rows!r}")
    _check("put_rows", "h", h, index, rows)
    if index.shape[0] != h.shape[0]:
        raise ShapeError(f"put_rows: index has {index.shape[0]} row numbers but h has {h.shape[0]} rows")
    return PutRows.apply(h, index=index, rows=int(rows))
