"""Shared fixtures for the core's tests: the toy System, a registry that is restored after use, and the
toy registered as an in-process plugin."""

from __future__ import annotations

import pytest
from toy_system import ToySystem

import qcsurrogate
from qcsurrogate import registry

TOY_PLUGIN = "toy-plugin"
"""The plugin name `toy_registered` registers ToySystem (system name "toy") under."""


class ToyPlugin:
    """A plugin registering the toy System, as an installed plugin's entry point would."""

    @staticmethod
    @qcsurrogate.hookimpl
    def register_systems(register):
        register(ToySystem)


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


@pytest.fixture
def toy_registered(clean_registry) -> str:
    """ToySystem registered as system "toy" by plugin `TOY_PLUGIN` (returned); the registry is restored after."""
    qcsurrogate.register_plugin(ToyPlugin, name=TOY_PLUGIN)
    return TOY_PLUGIN
