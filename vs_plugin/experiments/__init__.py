"""Reproducible experiments: several rows (the method, its variants, baselines) x seeds x training
fractions, from one YAML config (``configs/experiments/``), with mean ± spread tables and plots."""

from .config import ExperimentConfig, RowSpec, load_experiment, parse_experiment
from .runner import run_experiment

__all__ = ["ExperimentConfig", "RowSpec", "load_experiment", "parse_experiment", "run_experiment"]
