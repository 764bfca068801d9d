"""`qcsurrogate study`: a base run config swept over any of its settings, repeated over seeds.

- `config`: the study file (`StudyConfig`) and `load_study`;
- `points`: the product of the study's axes, each point a validated run config with a directory name;
- `runner`: `StudyRunner`, which brings every point's run directory up to date (in this process or in
  `--jobs` processes), measures cost, and writes the table, the figures and the manifest;
- `table`, `figures`, `cost`: the rows read from each run directory, their plots, the timing of one step.
"""

from .config import CostConfig, MetricsConfig, StudyConfig, load_study
from .points import Point, expand
from .runner import Outcome, StudyRunner, pending_reason

__all__ = ["CostConfig", "MetricsConfig", "Outcome", "Point", "StudyConfig", "StudyRunner", "expand", "load_study",
           "pending_reason"]
