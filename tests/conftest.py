"""pytest configuration for the fastsoft tests.

The suite runs with ``--import-mode=importlib``, which does not put this folder on
sys.path; the shared helper module ``_arrays`` is imported from here.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: long sweeps, excluded from the default run (run with -m slow)")
    # fastsoft never warns (special values are results, not floating-point errors); the
    # tests and the reference silence their own expected warnings locally
    config.addinivalue_line("filterwarnings", "error::RuntimeWarning")


@pytest.fixture
def restore_threads():
    """Put fastsoft's thread setting back to its default after the test."""
    import fastsoft

    yield
    fastsoft.set_num_threads(None)


try:
    from hypothesis import settings
except ImportError:  # test_properties.py skips itself
    pass
else:
    settings.register_profile("fastsoft", max_examples=60, deadline=None)
    settings.register_profile("ci", max_examples=200, deadline=None)
    settings.load_profile(os.environ.get("FASTSOFT_HYPOTHESIS_PROFILE", "fastsoft"))
