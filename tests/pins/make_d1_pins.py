"""Writes tests/pins/d1/: small d = 1 surrogates saved by the code *before* orbitals (commit 09254e6)
with their predictions, so tests/test_orbitals_compat.py can check that today's code loads them and
predicts bit for bit the same. Rerun only at that commit:

    git worktree add /tmp/pins 09254e6 && cd /tmp/pins && PYTHONPATH=.:tests python <this file> OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from toy_system import ToySystem

from qcsurrogate.surrogate import PARC, Normalization, PlainCNN, parse_model_config
from qcsurrogate.training import save_model

CASES = {
    "parc_default": ("parc", {"width": 8}, "periodic"),
    "parc_split_state_bilinear_skip": ("parc", {"width": 8, "complex_mode": "split", "integrator_inputs": "state",
                                                "bilinear_inputs": True, "linear_skip": True}, "periodic"),
    "parc_block_hermitian_open": ("parc", {"width": 8, "integrator_inputs": "block", "bilinear_inputs": True,
                                           "project_rho": "hermitian"}, "open"),
    "parc_lstsq_spectrum": ("parc", {"width": 8, "linear_skip": True, "init": "lstsq", "integrator_inputs": "state",
                                     "project_rho": "spectrum", "dtype": "float64"}, "periodic"),
    "cnn_state_skip": ("cnn", {"width": 8, "integrator_inputs": "state", "linear_skip": True}, "periodic"),
}


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    index = {}
    for name, (kind, options, boundary) in CASES.items():
        system = ToySystem(L=6, boundary=boundary)
        state = system.initial_state("random_start", seed=3, n_traj=3)
        deriv = system.rhs(state)
        nxt = state.axpy(0.05, deriv)
        norm = Normalization.fit(system.graph, state, deriv, nxt - state)
        torch.manual_seed(7)
        config = parse_model_config({"name": kind, **options})
        model = (PARC if kind == "parc" else PlainCNN)(system.graph, boundary, config, norm)
        report = model.initialize_from_data(state, deriv, nxt)
        model.eval()
        pred, aux = model.predict(model.prepare(state))
        save_model(model, out / name)
        tensors = {f"state.{k}": v.contiguous() for k, v in state.variables().items()}
        tensors |= {f"deriv.{k}": v.contiguous() for k, v in deriv.variables().items()}
        tensors |= {f"next.{k}": v.contiguous() for k, v in nxt.variables().items()}
        tensors |= {f"pred.{k}": v.detach().contiguous() for k, v in pred.variables().items()}
        tensors |= {f"aux.{k}": v.detach().contiguous() for k, v in aux.items()}
        save_file({k: (torch.view_as_real(v).contiguous() if v.is_complex() else v) for k, v in tensors.items()},
                  str(out / name / "io.safetensors"))
        index[name] = {"surrogate": kind, "options": options, "boundary": boundary, "n_parameters": model.n_parameters(),
                       "complex": sorted(k for k, v in tensors.items() if v.is_complex()), "init_report": report}
    (out / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
