"""Shared test set-up: Hypothesis profiles and the device switch.

Profiles (environment variable HYPOTHESIS_PROFILE): ``ci`` (default;
derandomized, few examples, the whole suite in a few minutes on 2 cores),
``dev`` (more examples, random) and ``thorough`` (500 examples per test).

Device switch: ``pytest --device gpu`` or ``MINITX_TEST_DEVICE=gpu`` runs every
test on the GPU backend; GPU-only tests skip with a reason when no GPU is
available.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import minitx

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                    HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=15, derandomize=True, print_blob=True, **_common)
settings.register_profile("dev", max_examples=60, **_common)
settings.register_profile("thorough", max_examples=500, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_addoption(parser):
    parser.addoption("--device", default=os.environ.get("MINITX_TEST_DEVICE", "cpu"),
                     help="run the suite on 'cpu' (default) or 'gpu'")


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: test needs a CUDA GPU with CuPy")
    config.addinivalue_line("markers", "slow: a test that trains a model (seconds to a minute)")


def pytest_collection_modifyitems(config, items):
    if minitx.gpu_available():
        return
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA GPU (not available here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def device(pytestconfig):
    """The device under test: 'cpu', or 'gpu' with the switch on."""
    dev = minitx.backend.normalize_device(pytestconfig.getoption("--device"))
    if dev == "gpu" and not minitx.gpu_available():
        pytest.skip("--device gpu asked for, but no GPU is available")
    return dev


@pytest.fixture
def T(device):
    """Make a float64 tensor on the device under test: ``T(array, grad=True)``."""
    def make(a, grad=False, dtype=np.float64):
        return minitx.tensor(np.asarray(a, dtype=dtype), device=device, requires_grad=grad)
    return make
