"""Entry point of the distribution: group `qcsurrogate`, name `ssh` (see pyproject.toml)."""

from __future__ import annotations

import qcsurrogate

from .system import BOND_MATRIX, SSHChain


@qcsurrogate.hookimpl
def register_systems(register):
    register(SSHChain)


@qcsurrogate.hookimpl
def register_views(register):
    register(BOND_MATRIX)  # the view SSHChain.graph names for u acting on the electrons
