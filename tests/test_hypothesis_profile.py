"""Property tests must draw the same examples on every CI run (see conftest.py)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.skipif(os.environ.get("HYPOTHESIS_PROFILE", "ci") != "ci", reason="explore profile chosen")


def test_default_profile_is_derandomised():
    assert settings.default.derandomize is True
    assert settings.default.deadline is None


_drawn: list[list[int]] = []


@settings(max_examples=5)
@given(st.lists(st.integers(), min_size=1))
def _record(xs):
    _drawn[-1].append(sum(xs))


def test_two_runs_draw_the_same_examples():
    for _ in range(2):
        _drawn.append([])
        _record()
    assert _drawn[0] == _drawn[1] and len(_drawn[0]) == 5
