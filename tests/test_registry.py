"""Plugin discovery through real entry points, in-process plugins, and the checks on what they register."""

from __future__ import annotations

import importlib
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
    load_system,
    register_plugin,
    unregister_plugin,
)
from qcsurrogate.system import ConfigError, System

FAKEPLUG = textwrap.dedent(
    '''
    """A fake installed plugin: one tiny System, found through the `qcsurrogate` entry-point group."""
    import torch

    from qcsurrogate import hookimpl
    from qcsurrogate.graph import DependencyGraph
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
    assert get_registry().systems["fakeplug-chain"].plugin == "fakeplug"


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


def test_unknown_system_lists_installed(clean_registry):
    register_plugin(plugin(ToySystem, ScalarLinear), name="toyplug")
    with pytest.raises(RegistryError, match=r"unknown system 'nope'; installed systems: .*scalar-linear, toy"):
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
    assert set(ToySystem.scenarios()) == {"random_start", "at_rest"}
    assert ToySystem.scenarios()["random_start"].startswith("Random oscillator")
    s = toy.initial_state("random_start", seed=3, n_traj=4)
    assert s.batch_shape == (4,) and s.L == toy.L
    with pytest.raises(KeyError, match=r"no scenario 'nope'; available: \['at_rest', 'random_start'\]"):
        toy.initial_state("nope")
    with pytest.raises(ConfigError, match=r"unknown argument\(s\) \['n_traject'\]"):
        toy.initial_state("random_start", n_traject=3)
    assert toy.boundary == "periodic" and ToySystem(boundary="open").boundary == "open"
    assert ScalarLinear().boundary == "periodic"  # no boundary parameter: the default
