"""The one study engine: rows (the method, its variants, baselines) x seeds x training fractions,
from one study file (``configs/experiments/``), resumable cell by cell, with one result type, one
table writer (mean ± spread) and one plotter. ``vs-plugin study``, ``vs-plugin experiment`` and
``vs-plugin compare`` all run it."""

from .config import RowSpec, StudyConfig, load_study, parse_study
from .runner import run_study

__all__ = ["StudyConfig", "RowSpec", "load_study", "parse_study", "run_study"]
