"""YAML configs: strict keys, errors that name the key and the file, reuse as a `data:` section."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import qcsurrogate
from qcsurrogate import registry
from qcsurrogate.config import (
    ConfigError,
    DataConfig,
    SimulateConfig,
    SimulationConfig,
    StrictModel,
    load_simulate_config,
    load_yaml,
    parse_config,
)
from qcsurrogate.graph import DependencyGraph
from qcsurrogate.state import State
from qcsurrogate.system import System, SystemParams, scenario


class CfgParams(SystemParams):
    L: int = 4
    hopping: float = 1.0
    g: float = 0.5


class CfgChain(System):
    """Minimal registered system for config validation (dynamics irrelevant here)."""

    name = "cfg_toy_chain"
    Params = CfgParams
    field_names = ("Q", "P")

    def rhs(self, s: State) -> State:
        return s.map(torch.zeros_like)

    def energy(self, s: State) -> torch.Tensor:
        return s["Q"].sum(-1) * 0

    @property
    def graph(self) -> DependencyGraph:
        return DependencyGraph({"Q": ["P"], "P": ["Q"], "rho": ["rho"]})

    @scenario
    def shallow_quench(self, g_initial: float = 0.5) -> State:
        """Uniform state."""
        L = self.params.L
        return State({"Q": torch.zeros(L), "P": torch.zeros(L)}, torch.eye(L) / 2)


class _Plugin:
    @staticmethod
    @qcsurrogate.hookimpl
    def register_systems(register):
        register(CfgChain)


@pytest.fixture(autouse=True)
def registered():
    registry.register_plugin(_Plugin, name="cfg-test-plugin")
    try:
        yield
    finally:
        registry.unregister_plugin("cfg-test-plugin")


GOOD = """
system:
  name: cfg_toy_chain
  params: {L: 6, g: 0.8}
scenario:
  name: shallow_quench
  kwargs: {g_initial: 0.5}
simulation:
  dt: 0.08
  n_steps: 100
  save_every: 4
output: out/traj.h5
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def _error(tmp_path: Path, text: str) -> str:
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_simulate_config(p)
    msg = str(info.value)
    assert str(p) in msg, msg
    return msg


def test_good_config(tmp_path):
    cfg = load_simulate_config(_write(tmp_path, GOOD))
    assert cfg.system.params == {"L": 6, "g": 0.8}
    assert cfg.simulation.precision == "float64" and cfg.simulation.device == "cpu"
    assert cfg.simulation.compile is False and cfg.simulation.solver == "rk4"
    assert cfg.simulation.n_snapshots == 26 and math.isclose(cfg.simulation.duration, 8.0)
    assert cfg.output.path == Path("out/traj.h5") and cfg.output.compression is None
    system = cfg.system.build()
    assert isinstance(system, CfgChain) and system.params.g == 0.8
    assert cfg.initial_state(system).L == 6


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("simulation:", "simulaton:", "simulaton: unknown key (did you mean 'simulation'?)"),
        ("  save_every: 4", "  save_evry: 4", "simulation.save_evry: unknown key (did you mean 'save_every'?)"),
        ("  dt: 0.08", "  dt: -0.1", "simulation.dt: Input should be greater than 0"),
        ("  dt: 0.08", "  dt: .inf", "simulation.dt: Input should be a finite number"),
        ("  n_steps: 100", "  n_steps: 0", "simulation.n_steps: Input should be greater than or equal to 1"),
        ("  n_steps: 100", "  n_steps: 102", "simulation.n_steps: n_steps (102) must be a multiple of save_every (4)"),
        ("  save_every: 4", "  save_every: 4\n  precision: float16",
         "simulation.precision: Input should be 'float64' or 'float32'"),
        ("  save_every: 4", "  save_every: 4\n  device: gpu0", "simulation.device: 'gpu0' is not a torch device"),
        ("{L: 6, g: 0.8}", "{L: 6, gg: 0.8}", "system.params.gg: unknown key (did you mean 'g'?)"),
        ("{L: 6, g: 0.8}", "{L: six}", "system.params.L: Input should be a valid integer"),
        ("name: cfg_toy_chain", "name: nosuch", "system.name: unknown system 'nosuch'"),
        ("name: shallow_quench", "name: shalow_quench",
         "scenario.name: system 'cfg_toy_chain' has no scenario 'shalow_quench' (did you mean 'shallow_quench'?)"),
        ("{g_initial: 0.5}", "{g_intial: 0.5}",
         "scenario.kwargs.g_intial: scenario 'shallow_quench' has no argument 'g_intial' (did you mean 'g_initial'?)"),
        ("output: out/traj.h5", "", "output: required key is missing"),
        ("output: out/traj.h5", "output: {path: a.h5, compression_level: 3}",
         "output: compression_level needs compression: gzip"),
    ],
)
def test_errors_name_the_key(tmp_path, old, new, expected):
    text = textwrap.dedent(GOOD)
    assert old in text
    msg = _error(tmp_path, text.replace(old, new, 1))
    assert expected in msg, msg
    assert "Traceback" not in msg and "errors.pydantic.dev" not in msg


def test_several_errors_reported_at_once(tmp_path):
    text = textwrap.dedent(GOOD).replace("  dt: 0.08", "  dt: 0").replace("  save_every: 4", "  save_every: 0")
    msg = _error(tmp_path, text)
    assert "simulation.dt:" in msg and "simulation.save_every:" in msg


def test_yaml_problems(tmp_path):
    assert "YAML syntax error at line 4" in _error(tmp_path, "system:\n  name: x\n  params: {L: [\n")
    assert "YAML syntax error at line 2" in _error(tmp_path, "a: 1\n b: 2\n")
    assert "is empty" in _error(tmp_path, "# nothing\n")
    assert "top level must be a mapping" in _error(tmp_path, "- a\n- b\n")
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_simulate_config(tmp_path / "missing.yaml")


def test_yaml_is_loaded_safely(tmp_path):
    msg = _error(tmp_path, GOOD + "\nx: !!python/object/apply:os.system ['echo pwned']\n")
    assert "YAML syntax error" in msg or "could not determine a constructor" in msg


def test_data_config_reusable_in_a_larger_model(tmp_path):
    class RunConfig(StrictModel):
        data: DataConfig
        epochs: int = 1

    text = "data:\n" + textwrap.indent(textwrap.dedent(GOOD).replace("output: out/traj.h5", ""), "  ")
    run = load_yaml(_write(tmp_path, text + "epochs: 3\n"), RunConfig)
    assert run.data.simulation.dt == 0.08 and run.epochs == 3
    with pytest.raises(ConfigError) as info:
        load_yaml(_write(tmp_path, text.replace("dt: 0.08", "dt: 0")), RunConfig)
    assert "data.simulation.dt: Input should be greater than 0" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_yaml(_write(tmp_path, text.replace("n_steps: 100", "n_step: 100")), RunConfig)
    assert "data.simulation.n_step: unknown key (did you mean 'n_steps'?)" in str(info.value)


def test_output_forms():
    data = {
        "system": {"name": "cfg_toy_chain"},
        "scenario": {"name": "shallow_quench"},
        "simulation": {"dt": 0.1, "n_steps": 10},
    }
    a = parse_config({**data, "output": "x.h5"}, SimulateConfig)
    b = parse_config({**data, "output": {"path": "x.h5", "compression": "gzip", "compression_level": 6}},
                     SimulateConfig)
    assert a.output.path == b.output.path == Path("x.h5")
    assert b.output.compression == "gzip" and b.output.compression_level == 6


@settings(max_examples=40, deadline=None)
@given(
    dt=st.floats(min_value=-1.0, max_value=1.0, allow_nan=False),
    n_steps=st.integers(-2, 50),
    save_every=st.integers(-1, 7),
)
def test_simulation_validity(dt, n_steps, save_every):
    valid = dt > 0 and n_steps >= 1 and save_every >= 1 and n_steps % save_every == 0
    data = {"dt": dt, "n_steps": n_steps, "save_every": save_every}
    if valid:
        cfg = parse_config(data, SimulationConfig)
        assert cfg.n_snapshots == n_steps // save_every + 1
    else:
        with pytest.raises(ConfigError, match=r"(dt|n_steps|save_every): "):
            parse_config(data, SimulationConfig)


def test_scenario_kwargs_are_typed_by_the_signature(tmp_path):
    cfg = load_simulate_config(_write(tmp_path, GOOD.replace("{g_initial: 0.5}", "{g_initial: '1e-4'}")))
    assert cfg.scenario.kwargs == {"g_initial": 1e-4}
    msg = _error(tmp_path, GOOD.replace("{g_initial: 0.5}", "{g_initial: abc}"))
    assert "scenario.kwargs.g_initial: Input should be a valid number" in msg, msg
