"""Plugin discovery and the registries of systems and surrogates it fills."""

from __future__ import annotations

import importlib.metadata as md
import threading
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .system import System


class RegistryError(LookupError):
    """Unknown or conflicting registrations."""


@dataclass
class Registered:
    name: str
    obj: type
    plugin: str


@dataclass
class Registry:
    """Everything the installed plugins registered, by kind and name."""

    systems: dict[str, Registered] = field(default_factory=dict)
    surrogates: dict[str, Registered] = field(default_factory=dict)
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _add(self, table: dict[str, Registered], kind: str, base: type, obj: Any, plugin: str) -> type:
        if not (isinstance(obj, type) and issubclass(obj, base)):
            raise RegistryError(f"plugin '{plugin}' registered {obj!r} as a {kind}, but it is not a subclass of {base.__name__}")
        if getattr(obj, "__abstractmethods__", None):
            missing = sorted(obj.__abstractmethods__)
            raise RegistryError(f"plugin '{plugin}' registered {kind} {obj.__name__} with unimplemented methods {missing}")
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise RegistryError(f"plugin '{plugin}' registered {kind} {obj.__name__} without a `name`")
        if name in table:
            other = table[name]
            raise RegistryError(
                f"{kind} name '{name}' registered twice: by plugin '{other.plugin}' ({other.obj.__qualname__}) "
                f"and by plugin '{plugin}' ({obj.__qualname__})"
            )
        table[name] = Registered(name, obj, plugin)
        self.plugins.setdefault(plugin, {}).setdefault(kind + "s", []).append(name)
        return obj


def _surrogate_base() -> type:
    from .surrogate.base import Surrogate

    return Surrogate


def _plugin_version(pm: pluggy.PluginManager, plugin: object) -> str | None:
    for p, dist in pm.list_plugin_distinfo():
        if p is plugin:
            return dist.version
    return None


def _build(extra_plugins: list[tuple[str, object]]) -> Registry:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    from . import builtin_plugin

    pm.register(builtin_plugin, name="qcsurrogate")
    pm.load_setuptools_entrypoints(hookspecs.ENTRY_POINT_GROUP)
    for name, obj in extra_plugins:
        pm.register(obj, name=name)
    reg = Registry()
    for name, plugin in pm.list_name_plugin():
        version = md.version("qcsurrogate") if name == "qcsurrogate" and _installed("qcsurrogate") else _plugin_version(pm, plugin)
        reg.plugins[name] = {"version": version, "systems": [], "surrogates": []}
    # Call each implementation on its own so every registration is attributed to its plugin.
    for impl in pm.hook.register_systems.get_hookimpls():
        impl.function(register=lambda obj, _p=impl.plugin_name: reg._add(reg.systems, "system", System, obj, _p))
    base = _surrogate_base()
    for impl in pm.hook.register_surrogates.get_hookimpls():
        impl.function(register=lambda obj, _p=impl.plugin_name: reg._add(reg.surrogates, "surrogate", base, obj, _p))
    return reg


def _installed(dist: str) -> bool:
    try:
        md.version(dist)
        return True
    except md.PackageNotFoundError:
        return False


_lock = threading.Lock()
_registry: Registry | None = None
_extra: list[tuple[str, object]] = []


def get_registry(reload: bool = False) -> Registry:
    """The registry, built on first use from the entry-point group ``qcsurrogate``."""
    global _registry
    with _lock:
        if _registry is None or reload:
            _registry = _build(list(_extra))
        return _registry


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


def unregister_plugin(name: str) -> None:
    _extra[:] = [(n, p) for n, p in _extra if n != name]
    get_registry(reload=True)


def list_systems() -> list[str]:
    return sorted(get_registry().systems)


def list_surrogates() -> list[str]:
    return sorted(get_registry().surrogates)


def list_plugins() -> dict[str, dict[str, Any]]:
    """Installed plugins with their versions and what they registered."""
    return get_registry().plugins


def get_system_class(name: str) -> type[System]:
    reg = get_registry()
    if name not in reg.systems:
        installed = ", ".join(sorted(reg.systems)) or "none (install a plugin, e.g. `pip install qcsurrogate[holstein]`)"
        raise RegistryError(f"unknown system '{name}'; installed systems: {installed}")
    return reg.systems[name].obj  # type: ignore[return-value]


def load_system(name: str, **params: Any) -> System:
    """A configured System by registered name, e.g. ``load_system("holstein", L=8, g=0.8)``."""
    return get_system_class(name)(**params)


def get_surrogate_class(name: str) -> type:
    reg = get_registry()
    if name not in reg.surrogates:
        raise RegistryError(f"unknown surrogate '{name}'; installed surrogates: {', '.join(sorted(reg.surrogates))}")
    return reg.surrogates[name].obj
