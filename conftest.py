"""Hypothesis profiles for the whole suite (core and plugins).

`ci` (the default) is derandomised: every run draws the same examples, so a failure in CI reproduces
on any machine and a green run means the same thing twice. `explore` draws fresh random examples and
many more of them, to hunt for new counterexamples locally:

    HYPOTHESIS_PROFILE=explore .venv/bin/python -m pytest
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile(
    "explore", max_examples=300, deadline=None, derandomize=False, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(config, items):
    """With dynamo disabled (the mutation run) torch.compile is a no-op: skip tests about compilation itself."""
    if os.environ.get("TORCHDYNAMO_DISABLE", "") not in ("", "0"):
        skip = pytest.mark.skip(reason="TORCHDYNAMO_DISABLE is set: nothing is compiled")
        for item in items:
            if "dynamo" in item.keywords:
                item.add_marker(skip)
