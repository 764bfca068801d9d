"""Every hook a qcsurrogate plugin can implement, in one place.

A plugin is a module (or object) listed under the entry-point group ``qcsurrogate``; it implements
any of these with ``@qcsurrogate.hookimpl`` and calls the ``register`` callback it is handed::

    from qcsurrogate import hookimpl

    @hookimpl
    def register_systems(register):
        register(MyChain)

The core owns the registries (systems, surrogates, views): it rejects duplicate names, naming both
plugins, and checks that what is registered implements the right interface.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "qcsurrogate"
ENTRY_POINT_GROUP = "qcsurrogate"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_systems(register: Callable[[type], Any]) -> None:
    """Register System subclasses: call ``register(SystemClass)`` for each."""


@hookspec
def register_surrogates(register: Callable[[type], Any]) -> None:
    """Register Surrogate subclasses: call ``register(SurrogateClass)`` for each."""


@hookspec
def register_views(register: Callable[[Any], Any]) -> None:
    """Register `qcsurrogate.View` instances a plugin's graphs name: call ``register(view)`` for each.

    Registered this way (not when a module is imported), a view is there whenever the registry is,
    e.g. when a saved model's graph is rebuilt from the view names in its JSON.
    """
