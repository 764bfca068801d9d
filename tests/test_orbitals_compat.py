"""One orbital per site is unchanged by orbitals: surrogates saved by the code before orbitals existed
(tests/pins/d1, written at commit 09254e6 by tests/pins/make_d1_pins.py) load with their spec as it was
and predict bit for bit what they predicted then; a fresh model of the same seed has the same weights,
parameter count and least-squares fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from toy_system import ToySystem

from qcsurrogate.state import State
from qcsurrogate.surrogate import PARC, PlainCNN, parse_model_config
from qcsurrogate.training import load_model, save_model

PINS = Path(__file__).parent / "pins" / "d1"
INDEX = json.loads((PINS / "index.json").read_text())


def _io(name: str) -> dict[str, torch.Tensor]:
    raw = load_file(str(PINS / name / "io.safetensors"))
    cplx = set(INDEX[name]["complex"])
    return {k: (torch.view_as_complex(v) if k in cplx else v) for k, v in raw.items()}


def _state(io: dict[str, torch.Tensor], prefix: str) -> State:
    fields = {k.split(".", 1)[1]: v for k, v in io.items() if k.startswith(prefix + ".") and not k.endswith(".rho")}
    return State(fields, io[f"{prefix}.rho"], dtype=None)


@pytest.mark.parametrize("name", sorted(INDEX))
def test_saved_d1_model_predicts_bit_for_bit(name, tmp_path):
    io = _io(name)
    model = load_model(PINS / name)
    assert model.orbitals == 1 and model.n_parameters() == INDEX[name]["n_parameters"]
    pred, aux = model.predict(model.prepare(_state(io, "state")))
    for k, v in pred.variables().items():
        assert torch.equal(v, io[f"pred.{k}"]), k
    for k, v in aux.items():
        assert torch.equal(v, io[f"aux.{k}"]), k
    save_model(model, tmp_path / "again")  # a one-orbital spec is written as before: no 'orbitals' key
    assert json.loads((tmp_path / "again" / "model.json").read_text()).keys() == \
        json.loads((PINS / name / "model.json").read_text()).keys()


@pytest.mark.parametrize("name", sorted(INDEX))
def test_fresh_d1_model_equals_the_saved_one(name):
    """Same seed, same construction and least-squares initialisation: the same weights, bit for bit."""
    case = INDEX[name]
    io = _io(name)
    saved = load_model(PINS / name)
    torch.manual_seed(7)
    cls = PARC if case["surrogate"] == "parc" else PlainCNN
    model = cls(ToySystem(L=6).graph, case["boundary"], parse_model_config({"name": case["surrogate"], **case["options"]}),
                saved.normalization)
    report = model.initialize_from_data(_state(io, "state"), _state(io, "deriv"), _state(io, "next"))
    assert report == case["init_report"]
    ref = saved.state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(v, ref[k]), k
