"""The one place that decides, per stage, what a run needs and whether the run directory has it.

Stages in data-flow order::

    data -> split -> normalization -> train:<label> ... -> evaluate -> plot

Each stage's inputs are the config sections it reads and the artifact digests of the stages it reads
from. A stage is current when everything upstream is current, its recorded inputs equal the ones the
config implies now, and its files are intact; otherwise it is stale (made from other inputs, or
modified) or missing, and the reason says which input changed.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from ..config import DataConfig
from .config import RunConfig
from .layout import PRIMARY
from .ledger import Ledger, Status, config_digest, file_sha256

FIGURE_ONLY_EVALUATION_FIELDS = frozenset({"figure_snapshots"})


def data_hash(data: DataConfig) -> str:
    """The key of a data config: the name of its trajectory file in `data/` (how the data are computed,
    e.g. processes or threads, is not part of it: `DataConfig.identity`)."""
    blob = json.dumps(data.identity(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def train_stage(label: str) -> str:
    return f"train:{label}"


class Plan:
    """Inputs and upstream of every stage of one run config, judged against one run directory's ledger."""

    def __init__(self, cfg: RunConfig, ledger: Ledger) -> None:
        self.cfg = cfg
        self.ledger = ledger
        self.labels = list(cfg.model_configs())

    @functools.cached_property
    def _source_digest(self) -> str:
        """SHA-256 of the file a `from_file` scenario reads, hashed once per plan (it may be large)."""
        p = Path(self.cfg.data.scenario.kwargs["path"])
        return file_sha256(p) if p.exists() else "missing"

    @property
    def stages(self) -> list[str]:
        return ["data", "split", "normalization", *(train_stage(x) for x in self.labels), "evaluate", "plot"]

    def upstream(self, stage: str) -> list[str]:
        if stage == "data":
            return []
        if stage == "split":
            return ["data"]
        if stage == "normalization":
            return ["data", "split"]
        if stage.startswith("train:"):
            return ["data", "split", "normalization"]
        if stage == "evaluate":
            return ["data", "split", *(train_stage(x) for x in self.labels)]
        if stage == "plot":
            return ["data", "split", train_stage(PRIMARY), "evaluate"]
        raise KeyError(f"unknown stage '{stage}'; stages: {self.stages}")

    def inputs(self, stage: str) -> dict[str, str]:
        """Digest of every input of `stage`: config sections by name, upstream artifacts by stage name."""
        cfg = self.cfg
        own: dict[str, Any]
        if stage == "data":
            own = {"data_config": cfg.data.identity()}
            if cfg.data.scenario.name == "from_file":  # states read from a file: its content is an input
                own["initial_states_file"] = self._source_digest
        elif stage == "split":
            own = {"split_config": cfg.split.model_dump(mode="json")}
        elif stage == "normalization":
            own = {"window": cfg.training.objective.unroll.max_steps}  # the sampler's stride depends on it
        elif stage.startswith("train:"):
            label = stage.split(":", 1)[1]
            own = {"model_config": cfg.model_configs()[label].training_identity(),
                   "training": cfg.training.identity()}
        elif stage == "evaluate":
            ev = cfg.evaluation.model_dump(mode="json")
            own = {"evaluation": {k: v for k, v in ev.items() if k not in FIGURE_ONLY_EVALUATION_FIELDS}}
            inference = {x: c.inference_options() for x, c in cfg.model_configs().items() if c.inference_options()}
            if inference:  # absent when none is set, so runs recorded before these options existed stay current
                own["inference"] = inference
        elif stage == "plot":
            own = {"figures": {"name": cfg.name, "model": cfg.model.name,
                               "figure_snapshots": cfg.evaluation.figure_snapshots}}
        else:
            raise KeyError(f"unknown stage '{stage}'; stages: {self.stages}")
        out = {k: config_digest(v) for k, v in own.items()}
        out.update({u: self.ledger.digest(u) for u in self.upstream(stage)})
        return out

    def status(self, stage: str) -> Status:
        for up in self.upstream(stage):
            s = self.status(up)
            if s.state != "current":
                has_record = self.ledger.recorded_inputs(stage) is not None
                return Status(stage, "stale" if has_record else "missing", f"upstream {up} is {s.state}")
        return self.ledger.status(stage, self.inputs(stage))

    def statuses(self) -> list[Status]:
        return [self.status(s) for s in self.stages]
