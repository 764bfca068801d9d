"""Entry point of the `qcsurrogate-sd` distribution (group `qcsurrogate`, name `sd_chain`)."""

from __future__ import annotations

import qcsurrogate

from .system import SPIN_DENSITY_VIEWS, SDChain


@qcsurrogate.hookimpl
def register_systems(register):
    register(SDChain)


@qcsurrogate.hookimpl
def register_views(register):
    for view in SPIN_DENSITY_VIEWS:  # spin_density_x/y/z (named by SDChain.graph) and charge_density
        register(view)
