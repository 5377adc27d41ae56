import numpy as np

import minitx


def test_import_and_simple_backward():
    x = minitx.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.arange(6.0).reshape(2, 3))
