"""A run: one config, one run directory, its ledger, and the stages brought up to date in order.

Every command (`run`, `train`, `evaluate`, `plot`, `status`) goes through `Run`, so they all take the
same decisions: a current stage is kept, a stale one is redone with a log line saying why, and an
explicit `--resume` across a changed input is an error naming that input.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal, Self

import torch
import yaml

from .. import __version__, distributed
from ..artifacts import NormalizationFile, SplitFile, read_json
from ..atomic import atomic_write_json, atomic_write_text
from ..config import DataConfig
from ..device import resolve_device, use_threads
from ..evaluation.metrics import json_safe
from ..generate import output_files
from ..surrogate.base import Surrogate
from ..surrogate.normalization import Normalization
from ..system import ConfigError
from ..training.checkpoint import latest_checkpoint, load_model
from ..training.data import Split, fit_normalization, split_trajectories
from . import stages
from .config import RunConfig
from .layout import PRIMARY, RunLayout, RunLog
from .ledger import Ledger, changed_inputs
from .plan import Plan, data_hash, train_stage
from .preflight import preflight

Policy = Literal["auto", "resume", "restart"]
"""How training treats existing checkpoints: resume them when their inputs match, else start over
('auto'); insist on resuming ('resume'); always start over ('restart')."""


class Run:
    """The stages of `cfg` in its run directory; the data is opened at most once."""

    def __init__(self, cfg: RunConfig, echo: bool = True) -> None:
        self.cfg = cfg
        self.layout = RunLayout(cfg.output_dir)
        self.main = distributed.is_main()
        self.log = RunLog(self.layout, echo=echo, write=self.main)
        self.ledger = Ledger(self.layout)
        self.plan = Plan(cfg, self.ledger)
        self._data: stages.Dataset | None = None
        self.threads = use_threads(cfg.training.threads)
        self._device: torch.device | None = None

    @property
    def device(self) -> torch.device:
        if self._device is None:
            self._device = resolve_device(self.cfg.device)
        return self._device

    def write_config(self) -> None:
        if self.main:
            self.layout.root.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.layout.config, yaml.safe_dump(self.cfg.model_dump(mode="json"), sort_keys=False))

    def _sync(self) -> None:
        """Wait for every rank; the others then re-read the ledger rank 0 may have written meanwhile,
        so all ranks take the same current/stale decisions."""
        distributed.barrier()
        if not self.main:
            self.ledger.reload()

    def _announce(self, stage: str) -> bool:
        """True if `stage` must be (re)done; logs the reason when it was there but stale."""
        st = self.plan.status(stage)
        if st.state == "stale":
            self.log(f"{stage} is stale ({st.reason}); redoing it")
        return st.state != "current"

    # -- stage 1: ground truth ---------------------------------------------------------------------
    @property
    def data_path(self) -> Path:
        return self.layout.data_file(data_hash(self.cfg.data))

    def ensure_data(self) -> Path:
        path = self.data_path
        if self.main and self._announce("data"):
            inputs = self.plan.inputs("data")
            if path.exists() and _same_data(stages.recorded_data_config(path), self.cfg.data):
                self.log(f"reusing ground truth {path} (made earlier from this data config)")
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                stages.simulate_data(self.cfg.data, path, self.log)
            self.ledger.record("data", inputs, output_files(path))  # a master file and its shards, if sharded
        elif self.main:
            self.log(f"reusing ground truth {path}")
        self._sync()
        return path

    @property
    def data(self) -> stages.Dataset:
        if self._data is None:
            self._data = stages.Dataset(self.require_data(), loading=self.cfg.loading, log=self.log)
            d = self._data
            self.log(f"opened {d.n_traj} trajectories x {d.n_time} snapshots from {d.path}")
        return self._data

    def close(self) -> None:
        """Release the data file (a lazy source's handle and reader thread); the run can reopen it."""
        if self._data is not None:
            self._data.close()
            self._data = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def require_data(self) -> Path:
        """The current ground-truth file of this run; an error saying what to run when it is not current."""
        st = self.plan.status("data")
        if st.state != "current":
            raise FileNotFoundError(f"ground truth in {self.layout.root} is {st.state} ({st.reason}); "
                                    "run `qcsurrogate train` or `run` first")
        return self.data_path

    # -- stage 2: split and normalisation -----------------------------------------------------------
    def ensure_split(self) -> Split:
        if self.main and self._announce("split"):
            inputs = self.plan.inputs("split")
            s = self.cfg.split
            split = split_trajectories(self.data.n_traj, s.val_fraction, s.test_fraction, s.seed)
            atomic_write_json(self.layout.split, {**split.to_json(), "inputs": inputs})
            self.ledger.record("split", inputs, [self.layout.split])
        self._sync()
        return self.split

    @property
    def split(self) -> Split:
        d = read_json(self.layout.split, SplitFile)
        return Split(tuple(d.train), tuple(d.val), tuple(d.test), d.memorized)

    def ensure_normalization(self) -> Normalization:
        if self.main and self._announce("normalization"):
            inputs = self.plan.inputs("normalization")
            sampler = stages.training_sampler(self.data, self.split, self.cfg.training)
            norm = fit_normalization(self.data.system, sampler)
            atomic_write_json(self.layout.normalization, {"normalization": norm.to_json(), "inputs": inputs})
            self.ledger.record("normalization", inputs, [self.layout.normalization])
        self._sync()
        return Normalization.from_json(read_json(self.layout.normalization, NormalizationFile).normalization)

    # -- stage 3: training ----------------------------------------------------------------------------
    def ensure_trained(self, label: str, policy: Policy = "auto", stop_after: int | None = None) -> dict[str, Any] | None:
        """Train model `label` unless it is current; returns the training summary (None if kept)."""
        stage = train_stage(label)
        st = self.plan.status(stage)
        if st.state == "current" and policy != "restart":
            self.log(f"{stage} is current (trained from these inputs); keeping {self.layout.model_dir(label)}")
            return None
        norm = self.ensure_normalization()
        inputs = self.plan.inputs(stage)
        resume = self._resume_decision(label, inputs, policy, st.reason)
        self._sync()
        if self.main:
            if not resume:
                self._wipe_training(label)
            self.ledger.start(stage, inputs)
        self._sync()
        summary = stages.train_surrogate(
            self.data, self.split, norm, self.cfg.model_configs()[label], self.cfg.training,
            self.layout.training(label), self.device, self.log, resume=resume, stop_after=stop_after, inputs=inputs,
        )
        if self.main and summary["steps"] >= self.cfg.training.steps:
            self.ledger.record(stage, inputs, self.layout.model_files(label),
                               context={"device": str(self.device), "threads": self.threads})
        self._sync()
        return summary

    def _resume_decision(self, label: str, inputs: dict[str, str], policy: Policy, reason: str) -> bool:
        stage = train_stage(label)
        has_ckpt = latest_checkpoint(self.layout.checkpoints(label)) is not None
        recorded = self.ledger.recorded_inputs(stage)
        changed = changed_inputs(recorded, inputs) if recorded is not None else None
        if policy == "restart":
            return False
        if policy == "resume":
            if not has_ckpt:  # this model never started (`ensure_all_trained` checked that another one did)
                self.log(f"{stage}: no checkpoint in {self.layout.checkpoints(label)}; training from scratch")
                return False
            if changed is None:
                raise ConfigError(f"cannot resume {self.layout.checkpoints(label)}: the run directory does not record "
                                  "which inputs its checkpoints were made from; train without --resume")
            if changed:
                raise ConfigError(f"cannot resume {stage} in {self.layout.root}: its checkpoints were made from "
                                  f"other inputs (changed: {', '.join(changed)}); train without --resume to "
                                  "start over, or use another --output")
            return True
        if has_ckpt and changed == []:
            return True
        if changed:
            self.log(f"{stage} was made from other inputs (changed: {', '.join(changed)}); training from scratch")
        elif has_ckpt or recorded is not None:
            self.log(f"{stage}: {reason}; training from scratch")
        return False

    def _wipe_training(self, label: str) -> None:
        """Remove everything an earlier training of `label` left, so nothing stale can be picked up."""
        files = self.layout.training(label)
        shutil.rmtree(files.model, ignore_errors=True)
        shutil.rmtree(files.checkpoints, ignore_errors=True)
        files.log.unlink(missing_ok=True)
        files.summary.unlink(missing_ok=True)
        self.ledger.forget(train_stage(label))

    def ensure_all_trained(self, policy: Policy = "auto") -> None:
        if policy == "resume" and not any(
            latest_checkpoint(self.layout.checkpoints(x)) is not None or self.plan.status(train_stage(x)).state == "current"
            for x in self.plan.labels
        ):
            where = ", ".join(str(self.layout.checkpoints(x)) for x in self.plan.labels)
            raise ConfigError(f"nothing to resume: no checkpoint in {where}")
        for label in self.plan.labels:
            self.ensure_trained(label, policy)

    # -- stage 4: evaluation ----------------------------------------------------------------------------
    def models(self, labels: list[str] | None = None) -> dict[str, Surrogate]:
        out = {}
        for label in labels or self.plan.labels:
            st = self.plan.status(train_stage(label))
            if st.state != "current":
                raise FileNotFoundError(f"the trained '{label}' in {self.layout.model_dir(label)} is {st.state} "
                                        f"({st.reason}); run `qcsurrogate train` first")
            model = load_model(self.layout.model_dir(label), device=self.device)
            # the run config's inference-only settings, which the train stage's identity leaves out
            wanted = self.cfg.model_configs()[label]
            model.config = model.config.model_copy(update={k: getattr(wanted, k) for k in wanted.INFERENCE_ONLY})
            out[label] = model.attach_system(self.data.system)
        return out

    def ensure_evaluated(self, force: bool = False) -> dict[str, Any]:
        if not force and not self._announce("evaluate"):
            self.log(f"evaluation is current; keeping {self.layout.metrics}")
            return read_json(self.layout.metrics)
        inputs = self.plan.inputs("evaluate")
        results, truth, rollouts = stages.evaluate_models(self.data, self.split, self.models(), self.cfg.evaluation)
        results["computed_with"] = {"device": str(self.device), "threads": self.threads,
                                    "torch": torch.__version__, "qcsurrogate": __version__}
        results["inputs"] = inputs
        atomic_write_json(self.layout.metrics, json_safe(results))
        self.ledger.record("evaluate", inputs, [self.layout.metrics])
        ns, ro = results["next_step"], results["rollout"]
        self.log(f"next-step RMSE total {ns['rmse_total']:.3e}; after {ro['steps'][-1]} steps {ro['rmse_total'][-1]:.3e} "
                 f"({ro['diverged_fraction'][-1]:.0%} of rollouts diverged)")
        self._plot(results, truth, rollouts[PRIMARY])
        return results

    # -- stage 5: figures ---------------------------------------------------------------------------------
    def ensure_plotted(self, force: bool = False) -> list[Path]:
        if not force and not self._announce("plot"):
            self.log("figures are current")
            return [self.layout.root / rel for rel in self.ledger.stages["plot"]["outputs"]]
        st = self.plan.status("evaluate")
        if st.state != "current":
            raise FileNotFoundError(f"metrics.json in {self.layout.root} is {st.state} ({st.reason}); "
                                    "run `qcsurrogate evaluate` first")
        results = read_json(self.layout.metrics)
        truth, pred = stages.rollout_for_figures(self.data, self.split, self.models([PRIMARY])[PRIMARY], results)
        return self._plot(results, truth, pred)

    def _plot(self, results: dict[str, Any], truth, pred) -> list[Path]:
        inputs = self.plan.inputs("plot")
        paths = stages.draw_figures(self.data.system, results, truth, pred, self.layout.figures, self.cfg.name,
                                    self.cfg.evaluation.figure_snapshots)
        self.ledger.record("plot", inputs, paths)
        self.log("figures: " + ", ".join(str(p) for p in paths))
        return paths

    # -- everything ---------------------------------------------------------------------------------------
    def status_lines(self) -> list[str]:
        return [f"{s.stage:<16} {s.state:<8} {s.reason}" for s in self.plan.statuses()]


def run_pipeline(cfg: RunConfig, output: Path | None = None, policy: Policy = "auto", echo: bool = True) -> dict[str, Any]:
    """Bring every stage of `cfg` up to date: data, split, normalisation, training, evaluation, figures."""
    if output is not None:
        cfg = cfg.model_copy(update={"output_dir": Path(output)})
    preflight(cfg)
    distributed.init_from_env(cfg.device)
    with Run(cfg, echo=echo) as run:
        run.write_config()
        ranks = distributed.describe()
        run.log(f"qcsurrogate {__version__}: run '{cfg.name}' in {run.layout.root} ({run.threads} torch threads"
                + (f"; {ranks})" if ranks else ")"))
        run.ensure_data()
        run.ensure_split()
        run.ensure_all_trained(policy)
        if not run.main:
            return {}
        results = run.ensure_evaluated()
        if run.plan.status("plot").state != "current":
            run.ensure_plotted()
        return results


def _same_data(recorded: dict[str, Any] | None, data: DataConfig) -> bool:
    """Whether a data file's recorded data config defines the same data as `data` (by identity: how it was
    computed, e.g. processes or threads, does not matter)."""
    if recorded is None:
        return False
    try:
        return DataConfig.model_validate(recorded).identity() == data.identity()
    except ValueError:  # recorded by a version whose config no longer validates
        return False
