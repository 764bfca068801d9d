"""Entry point of the distribution: group `qcsurrogate`, name `ssh` (see pyproject.toml)."""

from __future__ import annotations

import qcsurrogate

from .system import SSHChain


@qcsurrogate.hookimpl
def register_systems(register):
    register(SSHChain)
