"""Per-surrogate configs: the `model:` block is validated by the Config of the surrogate its `name` selects
(plugins included), serialised with that Config's fields, carried over to another surrogate with
`config_for`; saved models load whatever their config holds about `name`; the data-dependent
initialisation hook is a no-op unless a surrogate implements it."""

from __future__ import annotations

import json
import sys
from typing import Literal

import pytest
import torch
from pydantic import BaseModel, Field, ValidationError

import qcsurrogate
from qcsurrogate.config import ConfigError, parse_config
from qcsurrogate.graph import DependencyGraph
from qcsurrogate.state import State
from qcsurrogate.surrogate import (
    PARC,
    CNNConfig,
    ModelConfig,
    Normalization,
    PARCConfig,
    PlainCNN,
    PlainCNNConfig,
    Surrogate,
    SurrogateConfig,
    config_for,
    parse_model_config,
)
from qcsurrogate.testing import random_density_matrix
from qcsurrogate.training import load_model, save_model

GRAPH = DependencyGraph({"X": ["V"], "V": ["X", ("rho", "diagonal")], "rho": ["X", "rho"]})


def random_state(L: int, batch: tuple[int, ...], seed: int = 0) -> State:
    g = torch.Generator().manual_seed(seed)
    return State(
        {"X": torch.randn(*batch, L, generator=g, dtype=torch.float64), "V": torch.randn(*batch, L, generator=g, dtype=torch.float64)},
        random_density_matrix(L, L // 2, batch, g),
    )


class Run(BaseModel):
    """Stands in for the run config: `model: ModelConfig`."""

    model_config = {"extra": "forbid", "validate_assignment": True}
    model: ModelConfig = Field(default_factory=PARCConfig)


# -- a plugin surrogate with its own options --------------------------------------------------------
class ScaledConfig(SurrogateConfig):
    name: Literal["scaled"] = "scaled"
    scale: float = Field(1.0, gt=0.0)
    width: int = Field(8, ge=1)


class Scaled(Surrogate):
    """Predicts `scale * state` (enough to exercise the config plumbing)."""

    name = "scaled"
    Config = ScaledConfig

    def __init__(self, graph, boundary, config, normalization) -> None:
        super().__init__(graph, boundary, config, normalization)
        self.w = torch.nn.Parameter(torch.ones((), dtype=self.dtype))

    def predict(self, state):
        return state.map(lambda t: t * self.config.scale), {}

    def loss(self, state, derivative, next_state, aux=None, derivative_weight=1.0):
        return self.w * 0, {}


class ParcAlias(PARC):
    name = "parc-alias"  # no Config of its own: one is derived from PARC's


@qcsurrogate.hookimpl
def register_surrogates(register):
    register(Scaled)
    register(ParcAlias)


@pytest.fixture()
def plugin():
    qcsurrogate.register_plugin(sys.modules[__name__], name="test-surrogate-config")
    yield
    qcsurrogate.registry.unregister_plugin("test-surrogate-config")


def error(data) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, Run, source="run.yaml")
    return str(info.value)


# -- the union ----------------------------------------------------------------------------------------
def test_name_selects_the_config_class_and_defaults_to_parc():
    assert type(Run().model) is PARCConfig
    assert type(Run.model_validate({"model": {"width": 8}}).model) is PARCConfig
    cnn = Run.model_validate({"model": {"name": "cnn", "width": 8, "integrator_inputs": "state"}}).model
    assert type(cnn) is PlainCNNConfig and cnn.width == 8 and cnn.integrator_inputs == "state"
    assert type(parse_model_config({})) is PARCConfig
    assert parse_model_config(cnn) == cnn


def test_errors_are_located_under_model_and_unknown_names_list_the_installed_surrogates():
    msg = error({"model": {"name": "transformer"}})
    assert "model.name: unknown surrogate 'transformer'; installed surrogates: cnn, parc" in msg
    assert "model.width: Input should be greater than or equal to 4" in error({"model": {"width": 2}})
    assert "model.widht: unknown key" in error({"model": {"widht": 8}})
    assert "model: init: lstsq fits the linear skip paths; set linear_skip: true" in error({"model": {"init": "lstsq"}})
    assert "model: expected a mapping of model options, got list" in error({"model": [1]})
    assert "model.name: Input should be a valid string" in error({"model": {"name": 3}})


def test_serialisation_keeps_the_selected_configs_fields_and_round_trips():
    run = Run.model_validate({"model": {"name": "cnn", "width": 16, "linear_skip": True}})
    dumped = run.model_dump(mode="json")
    assert dumped["model"] == PlainCNNConfig(width=16, linear_skip=True).model_dump(mode="json")
    assert Run.model_validate(json.loads(json.dumps(dumped))) == run


def test_the_shipped_configs_keep_the_fields_saved_models_and_checkpoints_hold():
    """PARC and the baseline accept the options of the former single SurrogateConfig, and options added
    since (conserve_energy, conserve_vector_lengths, autocast) are left out of dumps at their defaults, so configs saved before
    (model.json, checkpoints, run identities) compare equal to today's dumps."""
    before = {"name", "width", "dropout", "activation", "complex_mode", "integrator_inputs", "bilinear_inputs",
              "linear_skip", "init", "project_rho", "dtype"}
    added = {"conserve_energy", "conserve_vector_lengths", "autocast"}
    assert set(PARCConfig.model_fields) == set(PlainCNNConfig.model_fields) == before | added
    assert set(SurrogateConfig.model_fields) == {"name", "project_rho", "dtype", "conserve_energy", "conserve_vector_lengths"}
    assert set(PARCConfig().model_dump()) == set(PlainCNNConfig().model_dump()) == before
    assert set(PARCConfig(conserve_energy=True, conserve_vector_lengths=True, autocast="bf16").model_dump()) == before | added
    assert issubclass(PARCConfig, CNNConfig) and issubclass(PlainCNNConfig, CNNConfig)
    assert PARC.Config is PARCConfig and PlainCNN.Config is PlainCNNConfig
    with pytest.raises(ValidationError):
        PARCConfig(name="cnn")


def test_a_plugin_surrogate_gets_its_own_validated_block(plugin):
    run = Run.model_validate({"model": {"name": "scaled", "scale": 2.5}})
    assert type(run.model) is ScaledConfig and run.model.scale == 2.5
    assert run.model_dump()["model"] == {"name": "scaled", "project_rho": False, "dtype": "float32", "scale": 2.5, "width": 8}
    assert "model.scale: Input should be greater than 0" in error({"model": {"name": "scaled", "scale": 0}})
    assert "model.dropout: unknown key" in error({"model": {"name": "scaled", "dropout": 0.1}})
    assert "installed surrogates: cnn, parc, parc-alias, scaled" in error({"model": {"name": "nope"}})


def test_a_named_subclass_without_its_own_config_inherits_its_parents_options(plugin):
    cfg = Run.model_validate({"model": {"name": "parc-alias", "width": 8, "integrator_inputs": "block"}}).model
    assert type(cfg) is ParcAlias.Config and isinstance(cfg, PARCConfig) and cfg.name == "parc-alias"
    model = ParcAlias(GRAPH, "periodic", cfg, Normalization.identity(GRAPH))
    assert model.config.integrator_inputs == "block"


def test_a_config_whose_name_is_not_the_surrogates_is_refused_at_class_creation():
    with pytest.raises(TypeError, match=r"Mismatch\.Config must declare `name: Literal\['mismatch'\] = 'mismatch'`"):
        class Mismatch(PARC):
            name = "mismatch"
            Config = PARCConfig


def test_config_for_keeps_every_shared_option(plugin):
    parc = PARCConfig(width=16, dropout=0.1, activation="tanh", linear_skip=True, init="lstsq",
                      integrator_inputs="state", dtype="float64", project_rho=True)
    cnn = config_for("cnn", parc)
    assert type(cnn) is PlainCNNConfig
    assert cnn.model_dump() == {**parc.model_dump(), "name": "cnn"}
    assert config_for("parc", cnn) == parc
    scaled = config_for("scaled", parc)  # only what ScaledConfig accepts is carried over
    assert scaled.model_dump() == {"name": "scaled", "project_rho": True, "dtype": "float64", "scale": 1.0, "width": 16}


# -- saved models -------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [PARC, PlainCNN])
@pytest.mark.parametrize("legacy", ["name-in-config", "no-name-in-config"])
def test_saved_models_load_with_or_without_a_name_in_their_config(tmp_path, cls, legacy):
    torch.manual_seed(0)
    model = cls(GRAPH, "periodic", cls.Config(width=8, dtype="float64"), Normalization.identity(GRAPH)).eval()
    save_model(model, tmp_path / "m")
    spec = json.loads((tmp_path / "m" / "model.json").read_text())
    assert spec["config"]["name"] == cls.name
    if legacy == "no-name-in-config":
        del spec["config"]["name"]
        (tmp_path / "m" / "model.json").write_text(json.dumps(spec))
    loaded = load_model(tmp_path / "m")
    assert type(loaded) is cls and type(loaded.config) is cls.Config and loaded.config == model.config
    s = random_state(4, (2,), seed=1)
    assert torch.equal(loaded(s).rho, model(s).rho)


# -- the initialisation hook --------------------------------------------------------------------------
def test_initialisation_hook_is_a_no_op_by_default_and_without_lstsq():
    s = random_state(4, (6,), seed=2)
    nxt = State._raw({k: v + 0.01 for k, v in s.fields.items()}, s.rho)
    scaled = Scaled(GRAPH, "periodic", ScaledConfig(), Normalization.identity(GRAPH))
    assert scaled.initialize_from_data(s, s, nxt) == {}
    for cls in (PARC, PlainCNN):
        torch.manual_seed(0)
        model = cls(GRAPH, "periodic", cls.Config(width=8, linear_skip=True), Normalization.identity(GRAPH))
        before = {k: v.clone() for k, v in model.state_dict().items()}
        assert model.initialize_from_data(s, s, nxt) == {}
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        lstsq = cls(GRAPH, "periodic", cls.Config(width=8, linear_skip=True, init="lstsq"), Normalization.identity(GRAPH))
        report = lstsq.initialize_from_data(s, s, nxt)
        keys = {f"{p}:{v}" for v in GRAPH.variables for p in (("F", "S") if cls is PARC else ("N",))}
        assert set(report) == keys and all(r >= 0 for r in report.values())
        assert lstsq.training  # the train/eval mode is restored
