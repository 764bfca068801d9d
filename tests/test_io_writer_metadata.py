"""TrajectoryWriter metadata: error labels, the exact root-attribute set, plugin provenance, device option."""

from __future__ import annotations

import h5py
import pytest
import torch
from toy_system import ToySystem

from qcsurrogate import registry
from qcsurrogate.io import TrajectoryWriter, open_trajectory, simulate_to_file
from qcsurrogate.io import schema as S
from qcsurrogate.io import writer as W
from qcsurrogate.state import State


@pytest.fixture
def chain():
    return ToySystem(L=4)


def _snap(L: int = 4, n_t: int = 1) -> State:
    X = torch.zeros((n_t, L), dtype=torch.float64)
    return State._raw({"X": X, "V": X + 1}, torch.ones((n_t, L, L), dtype=torch.complex128))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        # lenient metadata keeps reprs of odd values, but a non-string key is still refused, named by its argument
        ({"scenario_kwargs": {1: "x"}}, r"^scenario_kwargs: keys must be strings, got 1$"),
        ({"simulation_options": {2: "x"}}, r"^simulation_options: keys must be strings, got 2$"),
        ({"simulation_options": {"a": {3: "x"}}}, r"^simulation_options\.a: keys must be strings, got 3$"),
        ({"extra_attrs": {"k": [object()]}}, r"^extra_attrs\.k\[0\]: object "),
        ({"scenario_kwargs": {"gen": object()}}, r"^scenario_kwargs\.gen: object "),
    ],
)
def test_bad_metadata_is_refused_naming_the_argument(tmp_path, chain, kwargs, match):
    with pytest.raises(TypeError, match=match):
        TrajectoryWriter(tmp_path / "x.h5", chain, dt=0.1, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_root_attributes_are_exactly_the_documented_set(tmp_path, chain):
    path = tmp_path / "a.h5"
    with TrajectoryWriter(path, chain, dt=0.1, save_every=2) as w:
        w.append(_snap(n_t=3))
    with h5py.File(path, "r") as h:
        keys = set(h.attrs)
        assert (h.attrs["n_trajectories"], h.attrs["n_time"], h.attrs["n_steps"]) == (1, 3, 4)
    assert keys == set(S.REQUIRED_ATTRS) | set(S.OPTIONAL_ATTRS) | {"plugin", "plugin_version"}


def test_root_attributes_while_writing_describe_an_empty_trajectory(tmp_path, chain):
    w = TrajectoryWriter(tmp_path / "a.h5", chain, dt=0.1).open()
    try:
        a = w._h5.attrs
        assert set(a) == set(S.REQUIRED_ATTRS) | set(S.OPTIONAL_ATTRS) | {"plugin", "plugin_version"}
        assert (a["n_trajectories"], a["n_time"], a["n_steps"]) == (0, 0, 0)
        assert S.decode_attr("batch_shape", a["batch_shape"]) == []
    finally:
        w.abort()


def _fake_registry(plugins):
    reg = registry.Registry()
    reg.systems["toy"] = registry.Registered("toy", ToySystem, "my-plugin")
    reg.plugins.update(plugins)
    return reg


@pytest.mark.parametrize(
    ("plugins", "expected"),
    [
        ({"my-plugin": {"version": "1.2.3"}}, ("my-plugin", "1.2.3")),
        ({"my-plugin": {"version": None}}, ("my-plugin", "")),
        ({"my-plugin": {}}, ("my-plugin", "")),
        ({}, ("my-plugin", "")),  # the plugin has no entry of its own: name known, version unknown
        ({"other": {"version": "9"}}, ("my-plugin", "")),
    ],
)
def test_plugin_of_reports_the_registering_plugin_and_its_version(monkeypatch, chain, plugins, expected):
    monkeypatch.setattr(registry, "get_registry", lambda: _fake_registry(plugins))
    assert W._plugin_of(chain) == expected


def test_plugin_provenance_is_written_to_the_file(tmp_path, monkeypatch, chain):
    monkeypatch.setattr(registry, "get_registry", lambda: _fake_registry({"my-plugin": {"version": "0.4"}}))
    path = simulate_to_file(chain, chain.initial_state("at_rest"), tmp_path / "p.h5", 0.1, 0)
    with open_trajectory(path) as f:
        s = f.summary()
    assert (s["plugin"], s["plugin_version"]) == ("my-plugin", "0.4")


def test_simulate_to_file_records_the_device_asked_for(tmp_path, chain):
    s0 = chain.initial_state("at_rest")
    path = simulate_to_file(chain, s0, tmp_path / "d.h5", 0.1, 2, device="cpu:0")
    with open_trajectory(path) as f:
        # the option as given, not the device the initial state happened to be on ("cpu")
        assert f.attrs["simulation_options"] == {"solver": "rk4", "device": "cpu:0", "compile": False}
    path = simulate_to_file(chain, s0, tmp_path / "e.h5", 0.1, 2, device=torch.device("cpu"))
    with open_trajectory(path) as f:
        assert f.attrs["simulation_options"]["device"] == "cpu"
