"""Skipping padded positions: position-wise layers run on the real rows only.

A batch of sequences padded to one length T wastes work on the padding: every
Linear, LayerNorm and feed-forward runs on all B*T positions although only N
are real (a quarter of them are padding when lengths spread evenly over
[T/2, T]).  ``RowPacking`` gathers the real positions of a (B, T, F) array
into (N, F) rows; attention, which needs the (B, T) layout for its scores,
scatters them back (zeros at the padding) around the fused attention op.

Positions left out are padding in the full sense: nothing is computed for
them and no other position attends to them (they are masked as keys).  For
positions that nothing reads anyway (masked source tokens, decoder positions
after the last scored label) the loss and every gradient are those of the
padded layout, up to float rounding.  (Dropout outside attention draws its
masks for the N packed rows: the same distribution, other draws.)

The models pack only on the CPU: on the GPU the row count would change from
batch to batch (no fixed shapes for CUDA graphs) and finding the rows of a
device mask costs a host sync.
"""
from .. import backend
from ..autograd.ops.rows import PutRows, TakeRows
from ..errors import DTypeError, ShapeError


class RowPacking:
    """The real positions of a (B, T) batch, from a boolean ``keep`` mask (True = real).

    ``index`` (N,) numbers the kept positions in the flattened (B*T) layout,
    batch-major; ``pack`` and ``unpack`` convert between (B, T, F) and (N, F).
    """

    def __init__(self, keep):
        xp = backend.get_array_module(keep)
        if keep.dtype.kind != "b":
            raise DTypeError(f"RowPacking needs a boolean mask (True = real position), got dtype {keep.dtype}")
        if keep.ndim != 2:
            raise ShapeError(f"RowPacking needs a (batch, length) mask, got shape {keep.shape}")
        self.keep = keep                                   # (B, T)
        self.batch, self.length = keep.shape
        self.index = xp.flatnonzero(keep)                  # (N,)

    @property
    def rows(self):
        """N, the number of kept positions."""
        return self.index.shape[0]

    def pack(self, x):
        """x (B, T, F) -> (N, F): the kept positions, batch-major."""
        B, T = self.batch, self.length
        if x.ndim != 3 or x.shape[:2] != (B, T):
            raise ShapeError(f"RowPacking.pack: x has shape {x.shape}, expected ({B}, {T}, features)")
        # index comes from flatnonzero: distinct rows in range, so the ops' checks are skipped
        return TakeRows.apply(x.reshape(B * T, x.shape[2]), index=self.index)   # (B*T, F) -> (N, F)

    def unpack(self, h):
        """h (N, F) -> (B, T, F) with zeros at the positions left out."""
        if h.ndim != 2 or h.shape[0] != self.rows:
            raise ShapeError(f"RowPacking.unpack: h has shape {h.shape}, expected ({self.rows}, features)")
        B, T = self.batch, self.length
        return PutRows.apply(h, index=self.index, rows=B * T).reshape(B, T, h.shape[1])  # -> (B, T, F)


def packing_for(keep):
    """A RowPacking of ``keep`` (B, T) when skipping its padding saves work, else None.

    None when ``keep`` is None, lives on the GPU (see the module docstring),
    or keeps every position or none.
    """
    if keep is None or backend.is_gpu_array(keep):
        return None
    n = int(keep.sum())
    if n == 0 or n == keep.size:
        return None
    return RowPacking(keep)


def rows_before_last_label(labels, ignore_index):
    """(B, T) bool: True at positions at or before the last label that is not ``ignore_index``.

    A causal decoder needs its outputs there; every later position is read by
    no scored position (they only attend backwards), so it can be skipped.
    """
    xp = backend.get_array_module(labels)
    scored = labels != ignore_index                                  # (B, T)
    return xp.logical_or.accumulate(scored[:, ::-1], axis=1)[:, ::-1]
