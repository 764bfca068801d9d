"""Entry point of the `qcsurrogate-sd` distribution (group `qcsurrogate`, name `sd_chain`)."""

from __future__ import annotations

import qcsurrogate

from .system import SDChain


@qcsurrogate.hookimpl
def register_systems(register):
    register(SDChain)

# The graph's spin_density_x/y/z views are the core's (spin-1/2 electrons are not special to this chain),
# so this plugin registers no views of its own.
