"""Hypothesis strategies for property-based tests of minitx ops and layers.

Public so users can test their own ops the way minitx tests its own::

    from hypothesis import given
    from minitx.testing import arrays, shapes
    from minitx import gradcheck, tensor

    @given(arrays(shapes()))
    def test_my_op(a):
        x = tensor(a, requires_grad=True)
        gradcheck(my_op, x)

Needs the ``hypothesis`` package (``pip install minitx[test]``).
"""
from .strategies import (arrays, bool_masks, broadcastable_shapes, padding_masks, shapes,
                         token_ids)

__all__ = ["arrays", "bool_masks", "broadcastable_shapes", "padding_masks", "shapes", "token_ids"]
