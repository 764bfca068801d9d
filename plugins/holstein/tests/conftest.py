"""Hypothesis settings when the plugin's tests run on their own (from plugins/holstein).

Run from the repository root, the root conftest.py has already loaded its profile (derandomised
`ci` by default, `HYPOTHESIS_PROFILE=explore` for fresh examples); this only fills in the same
derandomised default when that conftest is absent.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis.errors import InvalidArgument

try:
    settings.get_profile("ci")
except InvalidArgument:  # standalone: mirror the root profile
    settings.register_profile(
        "ci", max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
    )
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
