"""Entry point of the `qcsurrogate-holstein` distribution (group `qcsurrogate`, name `holstein`)."""

from __future__ import annotations

import qcsurrogate

from .system import HolsteinChain


@qcsurrogate.hookimpl
def register_systems(register):
    register(HolsteinChain)
