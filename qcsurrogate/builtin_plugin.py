"""The core's own plugin: registers the surrogates and views that ship with qcsurrogate."""

from __future__ import annotations

from .hookspecs import hookimpl


@hookimpl
def register_surrogates(register):
    from .surrogate import builtin_surrogates

    for cls in builtin_surrogates():
        register(cls)


@hookimpl
def register_views(register):
    from .views import CORE_VIEWS

    for view in CORE_VIEWS:
        register(view)
