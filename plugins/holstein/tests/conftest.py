"""Shared settings for the Holstein plugin tests: bounded hypothesis runs, small chains."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "holstein", max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.load_profile("holstein")
