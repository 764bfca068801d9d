"""Shared fixtures for the core's tests: the toy System and a registry that is restored after use."""

from __future__ import annotations

import pytest
from toy_system import ToySystem

from qcsurrogate import registry


@pytest.fixture
def toy() -> ToySystem:
    return ToySystem(L=6)


@pytest.fixture
def toy_state(toy: ToySystem):
    return toy.initial_state("random_start", seed=0, n_traj=2)


@pytest.fixture
def clean_registry():
    """Restore the in-process plugins and rebuild the registry after the test, whatever it did."""
    saved = list(registry._extra)
    try:
        yield registry
    finally:
        registry._extra[:] = saved
        registry.get_registry(reload=True)
