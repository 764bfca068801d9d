"""Plugin discovery through real entry points, in-process plugins, and the checks on what they register."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
import types

import pytest
from toy_system import LinearParams, ScalarLinear, ToySystem

import qcsurrogate
from qcsurrogate import hookimpl, registry
from qcsurrogate.registry import (
    RegistryError,
    get_registry,
    get_surrogate_class,
    get_system_class,
    list_plugins,
    list_surrogates,
    list_systems,
    list_views,
    load_system,
    register_plugin,
    unregister_plugin,
)
from qcsurrogate.system import ConfigError, ScenarioArgumentError, System
from qcsurrogate.views import View, get_view

FAKEPLUG = textwrap.dedent(
    '''
    """A fake installed plugin: one tiny System, found through the `qcsurrogate` entry-point group."""
    import torch

    from qcsurrogate import hookimpl
    from qcsurrogate.graph import DependencyGraph, View
    from qcsurrogate.state import State
    from qcsurrogate.system import System, SystemParams, scenario


    class FakeParams(SystemParams):
        L: int = 4
        omega: float = 1.0


    class FakeChain(System):
        name = "fakeplug-chain"
        Params = FakeParams
        field_names = ("X",)

        def rhs(self, state):
            return State._raw({"X": torch.zeros_like(state["X"])}, -1j * self.params.omega * state.rho * 0)

        def energy(self, state):
            return (state["X"] ** 2).sum(-1)

        @property
        def graph(self):
            return DependencyGraph({"X": ["X"], "rho": ["rho"]})

        @scenario
        def still(self):
            """Nothing moves."""
            L = self.params.L
            return State({"X": torch.zeros(L)}, torch.eye(L) / 2)


    @hookimpl
    def register_systems(register):
        register(FakeChain)


    @hookimpl
    def register_views(register):
        register(View("fakeplug_twice", "site", "site", lambda x: 2 * x, "twice the field"))
    '''
)


@pytest.fixture
def fakeplug(tmp_path, monkeypatch):
    """Install `fakeplug` 0.3 for the duration of a test: a module plus a dist-info with an entry point."""
    (tmp_path / "fakeplug.py").write_text(FAKEPLUG)
    info = tmp_path / "fakeplug-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[qcsurrogate]\nfakeplug = fakeplug\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    get_registry(reload=True)
    try:
        yield tmp_path
    finally:
        # Uninstall before rebuilding, so later tests see the registry as it was.
        while str(tmp_path) in sys.path:
            sys.path.remove(str(tmp_path))
        sys.modules.pop("fakeplug", None)
        importlib.invalidate_caches()
        get_registry(reload=True)


def plugin(*classes: type, hook: str = "register_systems") -> types.SimpleNamespace:
    """An in-process plugin object whose hook registers `classes`."""

    @hookimpl
    def impl(register):
        for cls in classes:
            register(cls)

    return types.SimpleNamespace(**{hook: impl})


# -- entry-point discovery ---------------------------------------------------------------------------
def test_installed_plugin_discovered_via_entry_point(fakeplug):
    assert "fakeplug-chain" in list_systems()
    system = load_system("fakeplug-chain", L=3, omega=2.0)
    assert type(system).__name__ == "FakeChain" and isinstance(system, System)
    assert system.L == 3 and system.params.omega == 2.0
    assert system.initial_state("still").L == 3
    plugins = list_plugins()
    assert plugins["fakeplug"]["version"] == "0.3"
    assert plugins["fakeplug"]["systems"] == ["fakeplug-chain"]
    assert plugins["fakeplug"]["views"] == ["fakeplug_twice"]
    assert get_registry().systems["fakeplug-chain"].plugin == "fakeplug"
    assert get_registry().views["fakeplug_twice"].plugin == "fakeplug"


def test_installed_view_resolves_in_a_fresh_process_without_touching_the_registry(fakeplug):
    """No import-order caveat: a graph naming a plugin's view is rebuilt from JSON (as when a model is
    loaded) in a process that imported nothing but the graph module."""
    code = textwrap.dedent(
        """
        import torch
        from qcsurrogate.graph import DependencyGraph
        g = DependencyGraph.from_dict({"X": [["X", "fakeplug_twice"]], "rho": [["rho", "matrix"]]})
        print(g.inputs("X")[0].resolved_view()(torch.ones(2)).tolist())
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fakeplug), *sys.path])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[2.0, 2.0]"


def test_fakeplug_is_gone_afterwards():
    assert "fakeplug-chain" not in list_systems()
    assert "fakeplug" not in list_plugins()


def test_core_plugin_listed():
    plugins = list_plugins()
    assert "qcsurrogate" in plugins
    assert plugins["qcsurrogate"]["version"] == qcsurrogate.__version__
    assert list_surrogates() == sorted(get_registry().surrogates)


# -- in-process plugins ------------------------------------------------------------------------------
def test_register_and_unregister_plugin(clean_registry):
    assert "toy" not in list_systems()
    register_plugin(plugin(ToySystem, ScalarLinear), name="toyplug")
    assert {"toy", "scalar-linear"} <= set(list_systems())
    assert get_system_class("toy") is ToySystem
    assert list_plugins()["toyplug"]["systems"] == ["toy", "scalar-linear"]
    assert list_plugins()["toyplug"]["version"] is None
    system = load_system("toy", L=5, c=0.2)
    assert isinstance(system, ToySystem) and system.L == 5 and system.params.c == 0.2
    unregister_plugin("toyplug")
    assert "toy" not in list_systems()
    unregister_plugin("toyplug")  # unregistering twice is harmless


def test_register_plugin_module_name_default(clean_registry):
    mod = types.ModuleType("my_toy_module")
    mod.register_systems = plugin(ToySystem).register_systems
    qcsurrogate.register_plugin(mod)
    assert get_registry().systems["toy"].plugin == "my_toy_module"


def test_duplicate_system_names_rejected(clean_registry):
    class OtherToy(ScalarLinear):
        name = "toy"

    register_plugin(plugin(ToySystem), name="first-plugin")
    with pytest.raises(RegistryError, match="'toy' registered twice") as info:
        register_plugin(plugin(OtherToy), name="second-plugin")
    msg = str(info.value)
    assert "first-plugin" in msg and "second-plugin" in msg
    assert "ToySystem" in msg and "OtherToy" in msg
    # The rejected plugin does not linger: the registry still rebuilds and the first plugin still works.
    assert "second-plugin" not in [n for n, _ in registry._extra]
    get_registry(reload=True)
    assert get_system_class("toy") is ToySystem


def test_same_plugin_registering_twice_rejected(clean_registry):
    with pytest.raises(RegistryError, match="registered twice"):
        register_plugin(plugin(ToySystem, ToySystem), name="twice")


class NotASystem:
    name = "not-a-system"


class AbstractSystem(System):
    name = "abstract"
    field_names = ("X",)

    def energy(self, state):  # rhs and graph are missing
        raise NotImplementedError


class Nameless(ToySystem):
    name = ""


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        (NotASystem, r"registered .*NotASystem.* as a system, but it is not a subclass of System"),
        (ToySystem(), "not a subclass of System"),
        (AbstractSystem, r"system AbstractSystem with unimplemented methods \['graph', 'rhs'\]"),
        (Nameless, "without a `name`"),
    ],
)
def test_invalid_registrations_rejected(clean_registry, obj, match):
    with pytest.raises(RegistryError, match=match) as info:
        register_plugin(plugin(obj), name="badplug")
    assert "plugin 'badplug'" in str(info.value)
    assert get_registry(reload=True) is not None  # the bad plugin was rolled back


def test_surrogate_registration_checks_base(clean_registry):
    with pytest.raises(RegistryError, match="not a subclass of Surrogate"):
        register_plugin(plugin(ToySystem, hook="register_surrogates"), name="badsurrogates")


# -- views -------------------------------------------------------------------------------------------
def _view(name: str) -> View:
    return View(name, "pair", "site", lambda x: x.diagonal(dim1=-2, dim2=-1).imag, "imaginary diagonal")


def test_views_are_registered_per_plugin_and_duplicates_name_both(clean_registry):
    register_plugin(plugin(_view("imag_diag"), hook="register_views"), name="viewplug")
    assert list_plugins()["viewplug"] == {"version": None, "systems": [], "surrogates": [], "views": ["imag_diag"]}
    assert "imag_diag" in list_views() and get_view("imag_diag").doc == "imaginary diagonal"
    with pytest.raises(RegistryError, match=r"view name 'imag_diag' registered twice: by plugin 'viewplug' "
                                            r"\(test_registry\._view\.<locals>\.<lambda>\) and by plugin 'other'"):
        register_plugin(plugin(_view("imag_diag"), hook="register_views"), name="other")
    with pytest.raises(RegistryError, match="view name 'bond_real' registered twice: by plugin 'qcsurrogate'"):
        register_plugin(plugin(_view("bond_real"), hook="register_views"), name="shadow")
    unregister_plugin("viewplug")
    with pytest.raises(KeyError, match="unknown view 'imag_diag'"):
        get_view("imag_diag")


def test_plugins_command_lists_views_per_plugin(clean_registry, capsys):
    from qcsurrogate.cli import main

    register_plugin(plugin(_view("imag_diag"), hook="register_views"), name="viewplug")
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "viewplug (version unknown)\n  view imag_diag (pair -> site): imaginary diagonal\n" in out
    assert "  view diagonal (pair -> site): real part of the diagonal" in out  # the core's, under 'qcsurrogate'
    assert main(["plugins", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)["plugins"]
    assert info["viewplug"]["views"] == {"imag_diag": {"kinds": "pair -> site", "description": "imaginary diagonal"}}
    assert list(info["qcsurrogate"]["views"]) == ["identity", "matrix", "diagonal", "bond_real", "bond_imag", "spin_density_x", "spin_density_y", "spin_density_z",
        *(f"spin_bond_{p}_{a}" for p in ("real", "imag") for a in "xyz")]


def test_a_view_must_be_a_view(clean_registry):
    with pytest.raises(RegistryError, match="plugin 'badviews' registered .* as a view, but it is not a "
                                            "qcsurrogate.View"):
        register_plugin(plugin(ToySystem, hook="register_views"), name="badviews")


def test_asking_the_registry_while_it_is_built_is_an_error_not_a_deadlock(clean_registry):
    """A plugin that resolves its own view at registration (or import) time gets a clear error."""

    @hookimpl
    def register_systems(register):
        get_view("not_yet_registered")

    with pytest.raises(RegistryError, match="asked for while plugins were still being registered"):
        register_plugin(types.SimpleNamespace(register_systems=register_systems), name="eager")
    assert "eager" not in list_plugins()


def test_graph_and_views_do_not_import_the_registry():
    """The graph resolves view names through the seam in views.py, so neither module imports the registry."""
    import ast
    from pathlib import Path

    for module in ("graph.py", "views.py"):
        tree = ast.parse((Path(qcsurrogate.__file__).parent / module).read_text())
        imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [m for m in imported if m and "registry" in m], (module, imported)


def test_unknown_system_lists_installed(clean_registry):
    register_plugin(plugin(ToySystem, ScalarLinear), name="toyplug")
    # sorted, whatever else is installed (holstein, ssh_chain) or registered by other tests' conftests
    with pytest.raises(RegistryError, match=r"unknown system 'nope'; installed systems: (.*, )?scalar-linear, (.*, )?toy\b"):
        load_system("nope")
    with pytest.raises(RegistryError, match="unknown surrogate 'nope'"):
        get_surrogate_class("nope")


def test_unknown_system_with_nothing_installed(clean_registry, monkeypatch):
    monkeypatch.setattr(get_registry(), "systems", {})
    with pytest.raises(RegistryError, match="none .*pip install"):
        get_system_class("holstein")


# -- parameters --------------------------------------------------------------------------------------
def test_bad_params_raise_config_error_naming_key(clean_registry):
    register_plugin(plugin(ToySystem), name="toyplug")
    with pytest.raises(ConfigError, match=r"parameters for system 'toy'(.|\n)*bogus") as info:
        load_system("toy", L=4, bogus=1.0)
    assert "bogus" in str(info.value)
    with pytest.raises(ConfigError, match=r"(?s)  L: .*integer"):
        load_system("toy", L="many")
    with pytest.raises(ConfigError, match=r"(?s)  boundary: "):
        load_system("toy", boundary="twisted")
    assert isinstance(ConfigError("x"), ValueError)


def test_params_are_frozen_and_validated():
    s = ScalarLinear(L=2)
    assert isinstance(s.params, LinearParams)
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        s.params.L = 3
    assert s.describe() == {
        "system": "scalar-linear",
        "params": {"L": 2, "lam": -0.8},
        "graph": {"X": [["X", "identity"]], "rho": [["rho", "matrix"]]},
    }
    assert repr(s) == "ScalarLinear(L=2, lam=-0.8)"


def test_system_scenarios_and_initial_state(toy):
    assert set(ToySystem.scenarios()) == {"random_start", "at_rest", "from_file"}  # from_file: every System's
    assert ToySystem.scenarios()["random_start"].startswith("Random oscillator")
    s = toy.initial_state("random_start", seed=3, n_traj=4)
    assert s.batch_shape == (4,) and s.L == toy.L
    with pytest.raises(KeyError, match=r"no scenario 'nope'; available: \['at_rest', 'from_file', 'random_start'\]"):
        toy.initial_state("nope")
    with pytest.raises(ScenarioArgumentError, match=r"n_traject: scenario 'random_start' has no argument "
                                                   r"'n_traject' \(did you mean 'n_traj'\?\); "
                                                   r"it accepts \['seed', 'n_traj', 'sigma'\]"):
        toy.initial_state("random_start", n_traject=3)
    assert issubclass(ScenarioArgumentError, ConfigError)
    assert toy.boundary == "periodic" and ToySystem(boundary="open").boundary == "open"
    assert ScalarLinear().boundary == "periodic"  # no boundary parameter: the default


# -- plugins that fail, the allow-list, and what files may not do -------------------------------------
def _install(tmp_path, monkeypatch, name: str, source: str) -> None:
    """Install module `name` with an entry point of the same name (removed by monkeypatch's undo)."""
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    info = tmp_path / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[qcsurrogate]\n{name} = {name}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)


@pytest.fixture
def broken_plugins(tmp_path, monkeypatch):
    """Three installed plugins that fail differently, beside fakeplug, which works."""
    _install(tmp_path, monkeypatch, "brokenimport", "import not_a_module_anywhere\n")
    _install(tmp_path, monkeypatch, "brokenhook", '''
        from qcsurrogate import hookimpl
        from qcsurrogate.graph import View

        @hookimpl
        def register_views(register):
            register(View("brokenhook_view", "site", "site", lambda x: x, "registered before the failure"))

        @hookimpl
        def register_systems(register):
            raise ValueError("the plugin's own bug")
        ''')
    _install(tmp_path, monkeypatch, "badhookname", '''
        from qcsurrogate import hookimpl

        @hookimpl
        def register_sistems(register):  # a typo: pluggy refuses an implementation of an unknown hook
            pass
        ''')
    (tmp_path / "fakeplug.py").write_text(FAKEPLUG)
    info = tmp_path / "fakeplug-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[qcsurrogate]\nfakeplug = fakeplug\n")
    yield
    monkeypatch.undo()
    for name in ("brokenimport", "brokenhook", "badhookname", "fakeplug"):
        sys.modules.pop(name, None)
    importlib.invalidate_caches()
    get_registry(reload=True)


def test_a_broken_plugin_is_reported_by_name_and_the_others_load(broken_plugins, capsys):
    reg = get_registry(reload=True)
    assert "fakeplug-chain" in reg.systems and "fakeplug" in reg.plugins
    assert set(reg.unavailable) == {"brokenimport", "brokenhook", "badhookname"}
    assert reg.unavailable["brokenimport"].startswith("failed to load brokenimport: ModuleNotFoundError")
    assert reg.unavailable["brokenhook"] == "its register_systems hook failed: ValueError: the plugin's own bug"
    assert reg.unavailable["badhookname"].startswith("implements unknown hook(s) register_sistems (the hooks are")
    assert "brokenhook_view" not in reg.views and "brokenhook" not in reg.plugins  # taken back whole
    # a name no plugin registers
    with pytest.raises(RegistryError, match=r"unknown system 'absent'; .*did not load: .*brokenhook \(its register"):
        get_system_class("absent")
    assert qcsurrogate.cli.main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "brokenimport: not loaded (failed to load brokenimport: ModuleNotFoundError" in out
    assert "fakeplug 0.3" in out


def test_the_allow_list_loads_only_the_plugins_it_names(broken_plugins, monkeypatch):
    monkeypatch.setenv(registry.ALLOW_ENV, "fakeplug, holstein")
    reg = get_registry(reload=True)
    assert "fakeplug-chain" in reg.systems and "brokenimport" not in sys.modules
    assert reg.unavailable["brokenimport"] == f"not listed in {registry.ALLOW_ENV}"
    monkeypatch.setenv(registry.ALLOW_ENV, "holstein")
    reg = get_registry(reload=True)
    assert "fakeplug-chain" not in reg.systems and "qcsurrogate" in reg.plugins  # the core always loads
    assert reg.unavailable["fakeplug"] == f"not listed in {registry.ALLOW_ENV}"


def test_a_data_file_cannot_make_the_reader_import_code(tmp_path, monkeypatch, toy):
    """A trajectory file names its system and plugin; reading it looks the name up among loaded plugins
    and never imports a module the file names."""
    import h5py

    from qcsurrogate.io import open_trajectory, simulate_to_file

    _install(tmp_path, monkeypatch, "evilmod", "import builtins\nbuiltins.EVIL_IMPORTED = True\n")
    (tmp_path / "evilmod-1.0.dist-info" / "entry_points.txt").unlink()  # on the path, but not a plugin
    path = simulate_to_file(toy, toy.initial_state("at_rest"), tmp_path / "t.h5", 0.1, 2)
    with h5py.File(path, "r+") as f:
        f.attrs["system"] = "evilmod"
        f.attrs["plugin"] = "evilmod"
    with open_trajectory(path) as tr, pytest.raises(RegistryError, match="unknown system 'evilmod'"):
        tr.system()
    import builtins

    assert "evilmod" not in sys.modules and not hasattr(builtins, "EVIL_IMPORTED")
