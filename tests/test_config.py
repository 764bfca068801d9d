"""YAML configs: strict keys, errors that name the key and the file, reuse as a `data:` section."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from toy_system import ToySystem

from qcsurrogate import State, hookimpl, register_plugin, scenario
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

# The toy System (tests/toy_system.py), registered as "toy", is what these configs name.
pytestmark = pytest.mark.usefixtures("toy_registered")


GOOD = """
system:
  name: toy
  params: {L: 6, c: 0.8}
scenario:
  name: random_start
  kwargs: {sigma: 0.5}
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
    assert cfg.system.params == {"L": 6, "c": 0.8}
    assert cfg.simulation.precision == "float64" and cfg.simulation.device == "cpu"
    assert cfg.simulation.compile == "auto" and cfg.simulation.solver == "rk4"  # decided per run (execution.py)
    assert (cfg.simulation.threads, cfg.simulation.processes, cfg.simulation.shards) == ("auto", "auto", "auto")
    assert cfg.simulation.n_snapshots == 26 and math.isclose(cfg.simulation.duration, 8.0)
    assert cfg.output.path == Path("out/traj.h5") and cfg.output.compression is None
    system = cfg.system.build()
    assert isinstance(system, ToySystem) and system.params.c == 0.8
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
        ("{L: 6, c: 0.8}", "{L: 6, cc: 0.8}", "system.params.cc: unknown key (did you mean 'c'?)"),
        ("{L: 6, c: 0.8}", "{L: six}", "system.params.L: Input should be a valid integer"),
        ("name: toy", "name: nosuch", "system.name: unknown system 'nosuch'"),
        ("name: random_start", "name: randm_start",
         "scenario.name: system 'toy' has no scenario 'randm_start' (did you mean 'random_start'?)"),
        ("{sigma: 0.5}", "{sigam: 0.5}",
         "scenario.kwargs.sigam: scenario 'random_start' has no argument 'sigam' (did you mean 'sigma'?)"),
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
        "system": {"name": "toy"},
        "scenario": {"name": "random_start"},
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


def test_scenario_argument_errors_are_all_reported_at_their_keys(tmp_path):
    """The loader reports what the scenario's own validation (`validate_scenario_kwargs`) finds, each
    problem at its key: constraints from the signature, unknown names with a suggestion."""
    msg = _error(tmp_path, GOOD.replace("{sigma: 0.5}", "{n_traj: 0, sigam: 1, seed: 1.5}"))
    assert "scenario.kwargs.n_traj: Input should be greater than or equal to 1" in msg, msg
    assert "scenario.kwargs.seed: Input should be a valid integer, got a number with a fractional part" in msg, msg
    assert ("scenario.kwargs.sigam: scenario 'random_start' has no argument 'sigam' (did you mean 'sigma'?); "
            "it accepts ['seed', 'n_traj', 'sigma']") in msg, msg


def test_scenario_without_its_required_argument_is_refused(tmp_path, clean_registry):
    class WithUserState(ToySystem):
        name = "toy-with-user-state"

        @scenario
        def given(self, state: State) -> State:
            """Start from a user-given state."""
            return state

    class Plugin:
        @staticmethod
        @hookimpl
        def register_systems(register):
            register(WithUserState)

    register_plugin(Plugin, name="user-state-plugin")
    text = GOOD.replace("name: toy", "name: toy-with-user-state").replace("name: random_start", "name: given")
    msg = _error(tmp_path, text.replace("{sigma: 0.5}", "{}"))
    assert "scenario.kwargs.state: Field required" in msg, msg
    msg = _error(tmp_path, text.replace("{sigma: 0.5}", "{state: 3}"))
    assert "scenario.kwargs.state: Input should be an instance of State" in msg, msg


def test_scenario_kwargs_are_typed_by_the_signature(tmp_path):
    cfg = load_simulate_config(_write(tmp_path, GOOD.replace("{sigma: 0.5}", "{sigma: '1e-4'}")))
    assert cfg.scenario.kwargs == {"sigma": 1e-4}
    msg = _error(tmp_path, GOOD.replace("{sigma: 0.5}", "{sigma: abc}"))
    assert "scenario.kwargs.sigma: Input should be a valid number" in msg, msg
