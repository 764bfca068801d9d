"""`qcsurrogate run`: ground truth -> training -> held-out evaluation -> figures, in one run directory.

Data flows one way and each stage reads only what the previous one wrote (HDF5 trajectories, JSON
split and normalisation, safetensors + JSON models, JSON metrics). The pieces:

- `config`: the run config schema (`RunConfig`);
- `layout`: where every artifact of a run directory lives (`RunLayout`);
- `ledger`: what each stage was made from (`stages.json`) and whether it is current;
- `plan`: the inputs of each stage for a config, and the one current/stale/missing decision;
- `stages`: the stages as functions of exactly what they need;
- `runner`: `Run`, which brings stages up to date, and `run_pipeline`.
"""

from .config import EvalConfig, RunConfig, SplitConfig, load_run_config
from .layout import PRIMARY, RunLayout
from .ledger import Ledger, Status
from .plan import Plan, data_hash
from .runner import Run, run_pipeline
from ..surrogate.base import build_surrogate
from ..training.data import fit_normalization
from .stages import Dataset

__all__ = [
    "PRIMARY",
    "Dataset",
    "EvalConfig",
    "Ledger",
    "Plan",
    "Run",
    "RunConfig",
    "RunLayout",
    "SplitConfig",
    "Status",
    "build_surrogate",
    "data_hash",
    "fit_normalization",
    "load_run_config",
    "run_pipeline",
]
