"""Entry point of the `qcsurrogate-ssh` distribution (group `qcsurrogate`, name `ssh_chain`)."""

from __future__ import annotations

import qcsurrogate

from .system import RING_BOND_MATRIX, SSHChain


@qcsurrogate.hookimpl
def register_systems(register):
    register(SSHChain)


@qcsurrogate.hookimpl
def register_views(register):
    register(RING_BOND_MATRIX)  # the view SSHChain.graph names for u acting on the electrons
