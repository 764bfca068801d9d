"""Plugin discovery and the registries of systems, surrogates and views it fills."""

from __future__ import annotations

import importlib.metadata as md
import os
import threading
from dataclasses import dataclass, field
from functools import cached_property
from types import SimpleNamespace
from typing import Any

import pluggy

from . import hookspecs, views
from .system import System
from .views import View

KINDS = ("system", "surrogate", "view")
"""What plugins register, each through its hook `register_<kind>s`."""

ALLOW_ENV = "QCSURROGATE_PLUGINS"
"""Comma-separated entry-point names of the installed plugins that may load (unset or empty: all of them).
The core's own registrations always load."""


class RegistryError(LookupError):
    """Unknown or conflicting registrations."""


@dataclass
class Registered:
    name: str
    obj: Any
    """A class for systems and surrogates, a `View` for views."""
    plugin: str


def _describe(obj: Any) -> str:
    if isinstance(obj, View):
        return f"{obj.fn.__module__}.{obj.fn.__qualname__}"
    return getattr(obj, "__qualname__", repr(obj))


def _surrogate_base() -> type:
    from .surrogate.base import Surrogate

    return Surrogate


def _check(kind: str, obj: Any, plugin: str) -> None:
    """Reject what cannot serve as a `kind`, naming the plugin that registered it."""
    if kind == "view":
        if not isinstance(obj, View):
            raise RegistryError(f"plugin '{plugin}' registered {obj!r} as a view, but it is not a qcsurrogate.View")
        return
    base = System if kind == "system" else _surrogate_base()
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise RegistryError(
            f"plugin '{plugin}' registered {obj!r} as a {kind}, but it is not a subclass of {base.__name__}"
        )
    if getattr(obj, "__abstractmethods__", None):
        missing = sorted(obj.__abstractmethods__)
        raise RegistryError(f"plugin '{plugin}' registered {kind} {obj.__name__} with unimplemented methods {missing}")
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        raise RegistryError(f"plugin '{plugin}' registered {kind} {obj.__name__} without a `name`")


@dataclass
class Registry:
    """Everything the installed plugins registered, by kind and name."""

    systems: dict[str, Registered] = field(default_factory=dict)
    surrogates: dict[str, Registered] = field(default_factory=dict)
    views: dict[str, Registered] = field(default_factory=dict)
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    """Installed plugins that did not load, with the reason: not allowed, failed to import, a hook raised."""

    def _drop(self, plugin: str) -> None:
        """Take back everything `plugin` registered (its hook failed part-way)."""
        for kind in KINDS:
            table: dict[str, Registered] = getattr(self, kind + "s")
            for name in [n for n, r in table.items() if r.plugin == plugin]:
                del table[name]
        self.plugins.pop(plugin, None)

    def missing_hint(self) -> str:
        """For 'unknown name' errors: the plugins that are installed but did not load."""
        if not self.unavailable:
            return ""
        return "; installed plugins that did not load: " + "; ".join(f"{n} ({why})" for n, why in self.unavailable.items())

    def _add(self, kind: str, obj: Any, plugin: str) -> Any:
        _check(kind, obj, plugin)
        table: dict[str, Registered] = getattr(self, kind + "s")
        name = obj.name
        if name in table:
            other = table[name]
            raise RegistryError(
                f"{kind} name '{name}' registered twice: by plugin '{other.plugin}' ({_describe(other.obj)}) "
                f"and by plugin '{plugin}' ({_describe(obj)})"
            )
        table[name] = Registered(name, obj, plugin)
        self.plugins.setdefault(plugin, {}).setdefault(kind + "s", []).append(name)
        return obj

    @cached_property
    def view_table(self) -> dict[str, View]:
        """Every registered view by name (what `qcsurrogate.views.get_view` resolves names in)."""
        return {name: r.obj for name, r in self.views.items()}


def _allowed() -> set[str] | None:
    raw = os.environ.get(ALLOW_ENV, "").strip()
    return {n.strip() for n in raw.split(",") if n.strip()} if raw else None


def _load_entry_points(pm: pluggy.PluginManager, reg: Registry) -> dict[str, str | None]:
    """Import and register the installed plugins one by one: a plugin that is not allowed, does not import
    or does not fit the hook specifications is set aside in `reg.unavailable` and the others load. Loading
    runs only the code of installed distributions, named by their entry points; nothing in a data file
    names code to import. Returns each loaded plugin's version."""
    allowed = _allowed()
    versions: dict[str, str | None] = {}
    for ep in md.entry_points(group=hookspecs.ENTRY_POINT_GROUP):
        if ep.name in versions or ep.name in reg.unavailable or pm.get_plugin(ep.name) is not None:
            continue  # the same distribution seen twice on the path
        if allowed is not None and ep.name not in allowed:
            reg.unavailable[ep.name] = f"not listed in {ALLOW_ENV}"
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as err:  # noqa: BLE001 - any failure of third-party code is reported, not raised
            reg.unavailable[ep.name] = f"failed to load {ep.value}: {type(err).__name__}: {err}"
            continue
        unknown = sorted(c.name for c in pm.get_hookcallers(plugin) or [] if not c.has_spec())
        if unknown:  # a misspelt hook would otherwise register nothing, silently
            pm.unregister(plugin)
            hooks = ", ".join(f"register_{k}s" for k in KINDS)
            reg.unavailable[ep.name] = f"implements unknown hook(s) {', '.join(unknown)} (the hooks are {hooks})"
            continue
        versions[ep.name] = ep.dist.version if ep.dist is not None else None
    return versions


def _plugin_version(name: str, versions: dict[str, str | None]) -> str | None:
    """The version of the distribution that installed plugin `name` (None for in-process plugins)."""
    if name == "qcsurrogate":
        return md.version("qcsurrogate") if _installed("qcsurrogate") else None
    return versions.get(name)


def _build(extra_plugins: list[tuple[str, object]]) -> Registry:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    from . import builtin_plugin

    reg = Registry()
    pm.register(builtin_plugin, name="qcsurrogate")
    versions = _load_entry_points(pm, reg)
    for name, obj in extra_plugins:
        pm.register(obj, name=name)
    extras = {name for name, _ in extra_plugins}
    for name, _ in pm.list_name_plugin():
        reg.plugins[name] = {"version": _plugin_version(name, versions), **{kind + "s": [] for kind in KINDS}}
    # Call each implementation on its own so every registration is attributed to its plugin. An installed
    # plugin whose hook raises is taken back whole and reported; an in-process one (register_plugin) raises.
    for kind in KINDS:
        for impl in getattr(pm.hook, f"register_{kind}s").get_hookimpls():
            name = impl.plugin_name
            if name in reg.unavailable:
                continue
            try:
                impl.function(register=lambda obj, _p=name, _k=kind: reg._add(_k, obj, _p))
            except Exception as err:
                if name in extras or name == "qcsurrogate":
                    raise
                reg._drop(name)
                reg.unavailable[name] = f"its register_{kind}s hook failed: {type(err).__name__}: {err}"
    return reg


def _installed(dist: str) -> bool:
    try:
        md.version(dist)
        return True
    except md.PackageNotFoundError:
        return False


_lock = threading.RLock()
_building = False
_registry: Registry | None = None
_extra: list[tuple[str, object]] = []


def get_registry(reload: bool = False) -> Registry:
    """The registry, built on first use from the entry-point group ``qcsurrogate``."""
    global _registry, _building
    with _lock:
        if _building:  # re-entered by the same thread (the lock is reentrant): a plugin asked too early
            raise RegistryError(
                "the registry was asked for while plugins were still being registered (e.g. a plugin module "
                "that resolves a view name at import); resolve views lazily, e.g. inside `System.graph`"
            )
        if _registry is None or reload:
            _building = True
            try:
                _registry = _build(list(_extra))
            finally:
                _building = False
        return _registry


views.set_view_lookup(lambda: get_registry().view_table)


def register_plugin(plugin: object, name: str | None = None) -> None:
    """Register a plugin object in-process (for notebooks and tests; installed plugins use entry points)."""
    entry = (name or getattr(plugin, "__name__", repr(plugin)), plugin)
    _extra.append(entry)
    try:
        get_registry(reload=True)
    except BaseException:
        # A plugin that fails to register must not stay behind and break every later reload.
        _extra.remove(entry)
        raise


def register_view(view: View, name: str | None = None) -> View:
    """Register one view in-process, as a plugin of its own named `name` (default ``view:<view name>``).

    For notebooks and tests; an installed plugin registers its views through its `register_views`
    hook. The same rules apply (a name another plugin registered is an error); undo with
    `unregister_plugin(name)`.
    """
    plugin = SimpleNamespace(register_views=hookspecs.hookimpl(lambda register: register(view)))
    register_plugin(plugin, name=name or f"view:{view.name}")
    return view


def unregister_plugin(name: str) -> None:
    _extra[:] = [(n, p) for n, p in _extra if n != name]
    get_registry(reload=True)


def list_systems() -> list[str]:
    return sorted(get_registry().systems)


def list_surrogates() -> list[str]:
    return sorted(get_registry().surrogates)


def list_views() -> list[str]:
    return sorted(get_registry().views)


def list_plugins() -> dict[str, dict[str, Any]]:
    """Installed plugins with their versions and what they registered."""
    return get_registry().plugins


def get_system_class(name: str) -> type[System]:
    reg = get_registry()
    if name not in reg.systems:
        installed = ", ".join(sorted(reg.systems)) or "none (install a plugin, e.g. `pip install qcsurrogate[holstein]`)"
        raise RegistryError(f"unknown system '{name}'; installed systems: {installed}{reg.missing_hint()}")
    return reg.systems[name].obj  # type: ignore[return-value]


def load_system(name: str, **params: Any) -> System:
    """A configured System by registered name, e.g. ``load_system("holstein", L=8, g=0.8)``."""
    return get_system_class(name)(**params)


def get_surrogate_class(name: str) -> type:
    reg = get_registry()
    if name not in reg.surrogates:
        raise RegistryError(f"unknown surrogate '{name}'; installed surrogates: {', '.join(sorted(reg.surrogates))}"
                            f"{reg.missing_hint()}")
    return reg.surrogates[name].obj
