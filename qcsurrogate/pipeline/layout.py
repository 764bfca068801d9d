"""The run directory: the one place that knows where each artifact of a run lives.

    config.yaml                   the resolved config of the last command
    stages.json                   the ledger: per stage, its inputs and outputs (see `ledger`)
    log.txt                       what happened, with times
    data/<key>.h5                 ground truth (key: hash of the data config)
    split.json                    trajectory split (train / val / test)
    normalization.json            input/derivative/increment scales fitted on the training split
    model/                        the run's surrogate: model.safetensors + model.json
    checkpoints/                  its resumable training state (safetensors + JSON)
    train_log.jsonl               its per-step training metrics
    train_summary.json            its training time and throughput
    baseline_<name>/...           the same four for each trained baseline (e.g. baseline_cnn/; `RunLayout.training`)
    metrics.json                  held-out evaluation
    figures/*.png                 snapshots, RMSE vs window, observables
    evaluations/<stem>/           `evaluate --data <stem>.h5`: metrics.json + figures/ on another trajectory file
"""

from __future__ import annotations

import time
from pathlib import Path

from ..training.trainer import TrainingFiles

PRIMARY = "model"
"""Label of the run's own surrogate; trained baselines are labelled by their surrogate name."""


class RunLayout:
    """Paths of one run directory (nothing is created until a stage writes)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    config = property(lambda self: self.root / "config.yaml")
    ledger = property(lambda self: self.root / "stages.json")
    log_file = property(lambda self: self.root / "log.txt")
    split = property(lambda self: self.root / "split.json")
    normalization = property(lambda self: self.root / "normalization.json")
    metrics = property(lambda self: self.root / "metrics.json")
    figures = property(lambda self: self.root / "figures")

    def external_evaluation(self, stem: str) -> Path:
        """Where `evaluate --data <stem>.h5` writes (outside the ledger; the metrics name their file)."""
        return self.root / "evaluations" / stem

    def data_file(self, key: str) -> Path:
        return self.root / "data" / f"{key}.h5"

    def training(self, label: str) -> TrainingFiles:
        """Where the training of model `label` writes: model/, checkpoints/, train_log.jsonl, train_summary.json."""
        return TrainingFiles.under(self.root if label == PRIMARY else self.root / f"baseline_{label}")

    def model_dir(self, label: str) -> Path:
        return self.training(label).model

    def model_files(self, label: str) -> list[Path]:
        d = self.model_dir(label)
        return [d / "model.safetensors", d / "model.json"]

    def checkpoints(self, label: str) -> Path:
        return self.training(label).checkpoints

    def relative(self, path: Path) -> str:
        return Path(path).relative_to(self.root).as_posix()


class RunLog:
    """Timestamped lines in log.txt, echoed to the console; only the main process writes."""

    def __init__(self, layout: RunLayout, echo: bool = True, write: bool = True) -> None:
        self.path = layout.log_file
        self.echo = echo
        self.write = write

    def __call__(self, msg: str) -> None:
        if not self.write:
            return
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(line + "\n")
        if self.echo:
            print(line, flush=True)
