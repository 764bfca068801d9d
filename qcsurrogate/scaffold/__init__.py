"""`qcsurrogate new-plugin NAME`: a new system plugin, ready to install, test and run.

The files come from `template/` (package data, shipped in the wheel), with the names substituted:
for NAME `chain-demo` the distribution is `qcsurrogate-chain-demo`, the import package
`qcsurrogate_chain_demo`, the entry-point (plugin) and system name `chain_demo`, the classes
`ChainDemoSystem` and `ChainDemoParams`. Nothing is written unless everything can be: the files
are rendered in memory, written into a temporary directory beside the target and renamed into
place in one step.
"""

from __future__ import annotations

import keyword
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..system import ConfigError

NAME_RE = re.compile(r"^[a-z][a-z0-9]*([_-][a-z0-9]+)*$")
"""A plugin name (after lowercasing): ASCII letters and digits, words joined by single '-' or '_', starting
with a letter."""

MAX_NAME = 40

TEMPLATE_FILES: dict[str, str] = {
    # template file (under template/) -> path in the new plugin ({package} is the import package)
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "conftest.py.tmpl": "conftest.py",
    "example.yaml.tmpl": "example.yaml",
    "package/__init__.py.tmpl": "{package}/__init__.py",
    "package/system.py.tmpl": "{package}/system.py",
    "package/plugin.py.tmpl": "{package}/plugin.py",
    "tests/test_system.py.tmpl": "tests/test_system.py",
}

DESCRIPTIONS: dict[str, str] = {
    "pyproject.toml": "distribution metadata, the entry point (group `qcsurrogate`)",
    "README.md": "what the plugin is, how to install, test and run it",
    "conftest.py": "registers the plugin in-process when the tests run uninstalled",
    "example.yaml": "a small `qcsurrogate run` config",
    "{package}/__init__.py": "the package",
    "{package}/system.py": "the System: parameters, rhs, energy, graph, a scenario",
    "{package}/plugin.py": "the register_systems hook",
    "tests/test_system.py": "the conformance kit and physics checks",
}


@dataclass(frozen=True)
class PluginNames:
    """Every name a plugin called NAME gets."""

    name: str
    """The entry-point (plugin) name and the registered system name, e.g. `chain_demo`."""
    dist: str
    """The distribution, e.g. `qcsurrogate-chain-demo`."""
    package: str
    """The import package, e.g. `qcsurrogate_chain_demo`."""
    cls: str
    """The System subclass, e.g. `ChainDemoSystem`."""
    params: str
    """Its parameter model, e.g. `ChainDemoParams`."""

    @classmethod
    def from_name(cls, raw: str) -> PluginNames:
        """Validate NAME and derive the other names; `ConfigError` saying what is wrong otherwise."""
        name = raw.strip().lower()
        if name.startswith("qcsurrogate"):
            rest = re.sub(r"^qcsurrogate[-_]?", "", name, flags=re.IGNORECASE)
            hint = f" (use '{rest}': the distribution becomes qcsurrogate-{rest})" if rest else ""
            raise ConfigError(f"plugin name {raw!r}: give the name without the 'qcsurrogate' prefix{hint}")
        if not NAME_RE.match(name):
            raise ConfigError(
                f"plugin name {raw!r} is not valid: use lowercase letters, digits and single '-' or '_' between "
                "words, starting with a letter (e.g. 'kondo-chain')"
            )
        if len(name) > MAX_NAME:
            raise ConfigError(f"plugin name {raw!r} is longer than {MAX_NAME} characters")
        ident = name.replace("-", "_")
        if keyword.iskeyword(ident):
            raise ConfigError(f"plugin name {raw!r} is a Python keyword")
        camel = "".join(part.capitalize() for part in ident.split("_"))
        return cls(name=ident, dist="qcsurrogate-" + ident.replace("_", "-"), package="qcsurrogate_" + ident,
                   cls=camel + "System", params=camel + "Params")


def core_requirement() -> str:
    """`qcsurrogate>=<this version>` (without a bound when running from an uninstalled source tree)."""
    from .. import __version__

    match = re.match(r"^\d+(\.\d+)*", __version__)
    if not match or __version__.startswith("0.0.0"):
        return "qcsurrogate"
    return f"qcsurrogate>={match.group(0)}"


def render(names: PluginNames) -> dict[str, str]:
    """The new plugin's files, relative path -> text."""
    subs = {
        "{{name}}": names.name,
        "{{dist}}": names.dist,
        "{{package}}": names.package,
        "{{Class}}": names.cls,
        "{{Params}}": names.params,
        "{{core_requirement}}": core_requirement(),
    }
    root = resources.files(__package__).joinpath("template")
    out = {}
    for template, target in TEMPLATE_FILES.items():
        text = root.joinpath(template).read_text(encoding="utf-8")
        for key, value in subs.items():
            text = text.replace(key, value)
        leftover = re.findall(r"\{\{\w+\}\}", text)
        if leftover:  # a template bug, not a user error
            raise RuntimeError(f"template {template} has unknown placeholders {sorted(set(leftover))}")
        out[target.format(package=names.package)] = text
    return out


def _taken(names: PluginNames) -> str | None:
    """Which installed or registered plugin already uses the name, if any (two plugins registering the
    same system name cannot be installed together)."""
    from ..registry import get_registry

    reg = get_registry()
    if names.name in reg.systems:
        return f"system '{names.name}' is already registered by plugin '{reg.systems[names.name].plugin}'"
    if names.name in reg.plugins or names.name in reg.unavailable:
        return f"a plugin named '{names.name}' is already installed"
    return None


def default_path(names: PluginNames) -> Path:
    """Where `new-plugin` writes without `--path`: `./<distribution name>`."""
    return Path(names.dist)


def new_plugin(name: str, path: str | os.PathLike[str] | None = None) -> tuple[PluginNames, Path, list[str]]:
    """Write a new plugin called `name` into `path` (default `./qcsurrogate-<name>`).

    Returns the names, the directory and the files written (relative paths). Raises `ConfigError` for a
    bad or taken name and `FileExistsError` when `path` exists and is not an empty directory; in
    either case nothing is written.
    """
    names = PluginNames.from_name(name)
    taken = _taken(names)
    if taken:
        raise ConfigError(f"plugin name {name!r}: {taken}; choose another name")
    target = Path(path) if path is not None else default_path(names)
    if target.exists() and not (target.is_dir() and not any(target.iterdir())):
        what = "a non-empty directory" if target.is_dir() else "a file"
        raise FileExistsError(f"{target} already exists and is {what}; choose another --path or remove it")
    files = render(names)
    parent = target.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    try:
        for rel, text in files.items():
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text, encoding="utf-8")
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; give it the usual permissions
        if target.is_dir():
            target.rmdir()  # empty (checked above); fails, leaving it alone, if something appeared since
        os.rename(tmp, target)  # one step: the plugin is there complete or not at all
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return names, target, sorted(files)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
