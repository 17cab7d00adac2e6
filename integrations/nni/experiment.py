"""Run an NNI experiment (hyper-parameter search) on this machine and collect its trials.

The experiment config is NNI's own YAML (``experimentName``, ``searchSpaceFile``,
``trialCommand``, ``tuner``, ``trainingService: {platform: local}``...), the same file
``nnictl create --config`` takes. :func:`run_experiment` starts NNI's manager on 127.0.0.1 (see
:mod:`.loopback`; ``listen_all`` opts out),
waits for the trials, reads their results and always stops the manager, also on errors and
Ctrl-C.
"""

from __future__ import annotations

import math
import shlex
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import yaml
from nni.experiment import Experiment, ExperimentConfig

from vs_plugin.errors import ConfigError, VSPluginError

from .loopback import LOOPBACK, is_loopback, listening_addresses, loopback_environment

#: Experiment states after which no trial runs any more.
FINAL_STATES = ("DONE", "STOPPED", "ERROR")
#: Interpreters in a trialCommand that are replaced by the one running vs-plugin (NNI has no python path setting).
PYTHON_NAMES = ("python", "python3")


@dataclass(frozen=True)
class TrialOutcome:
    """A finished trial: its id, parameters and reported metrics (``default`` is the score)."""

    trial_id: str
    parameters: dict
    metrics: dict

    @property
    def score(self) -> float:
        value = self.metrics.get("default") if isinstance(self.metrics, dict) else self.metrics
        return float(value) if isinstance(value, (int, float)) else -math.inf


def load_experiment_config(path: Path) -> ExperimentConfig:
    """NNI's experiment config from ``path`` (paths in it are relative to its folder)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"NNI experiment config {path} does not exist")
    try:
        return ExperimentConfig.load(str(path))
    except (AttributeError, TypeError, ValueError, yaml.YAMLError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"{path} is not a valid NNI experiment config: {first}") from None


def use_this_python(trial_command: str) -> str:
    """Replace a leading ``python``/``python3`` by this interpreter, so trials see vs-plugin."""
    parts = shlex.split(trial_command)
    if parts and parts[0] in PYTHON_NAMES:
        parts[0] = sys.executable
    return shlex.join(parts)


def _outcomes(experiment: Experiment) -> list[TrialOutcome]:
    return [TrialOutcome(r.trialJobId, dict(r.parameter), r.value if isinstance(r.value, dict) else {"default": r.value})
            for r in experiment.export_data()]


def run_experiment(
    config: ExperimentConfig,
    *,
    port: int,
    max_trials: Optional[int] = None,
    work_dir: Optional[Path] = None,
    timeout_s: Optional[float] = None,
    poll_s: float = 1.0,
    log: Callable[[str], None] = print,
    listen_all: bool = False,
) -> list[TrialOutcome]:
    """Start the experiment on ``127.0.0.1:port``, wait until its trials are done, return their results.

    Args:
        config: NNI experiment config (its trialCommand's ``python`` becomes this interpreter).
        port: port of NNI's manager and web UI.
        listen_all: let NNI's manager listen on every network interface (its web UI and REST API
            have no login). By default it is bound to 127.0.0.1 (see :mod:`.loopback`), the
            listening addresses are read back from the kernel, and the run is refused if any
            is not a loopback address.
        max_trials: override ``maxTrialNumber``.
        work_dir: override ``experimentWorkingDirectory`` (where NNI keeps logs and trial output).
        timeout_s: stop waiting after this many seconds (the experiment is stopped either way).
        poll_s: seconds between status checks.

    Raises:
        VSPluginError: when the experiment fails, times out, or no trial reports a result.
    """
    config.trial_command = use_this_python(config.trial_command)
    if max_trials is not None:
        config.max_trial_number = max_trials
    if work_dir is not None:
        config.experiment_working_directory = str(Path(work_dir).resolve())
    if config.training_service is None or getattr(config.training_service, "platform", None) != "local":
        raise ConfigError("vs-plugin tune runs NNI experiments on this machine: set trainingService: {platform: local}")
    try:
        config.canonical_copy()  # NNI's own validation (search space file, trial folder...), before starting anything
    except (AttributeError, TypeError, ValueError) as error:
        raise ConfigError(f"invalid NNI experiment config: {error}") from None
    experiment = Experiment(config)
    started = time.monotonic()
    process = None
    binding = nullcontext() if listen_all else loopback_environment(Path(config.experiment_working_directory).expanduser())
    try:
        with binding:
            experiment.start(port)
    except Exception as error:  # noqa: BLE001 - NNI raises plain errors (port in use, manager failed to start)
        raise VSPluginError(f"NNI could not start the experiment on port {port}: {error}") from None
    process = experiment._proc  # the NNI manager we started, to make sure it ends
    try:
        log(_listening_line(experiment.id, port, listen_all))
        status = experiment.get_status()
        while status not in FINAL_STATES:
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                raise VSPluginError(f"the NNI experiment did not finish within {timeout_s:.0f} s (status {status}); stopped it")
            time.sleep(poll_s)
            status = experiment.get_status()
        if status == "ERROR":
            raise VSPluginError(f"the NNI experiment failed; see {Path(config.experiment_working_directory) / experiment.id / 'log'}")
        outcomes = _outcomes(experiment)
        jobs = experiment.list_trial_jobs()
    finally:
        try:
            experiment.stop()
        finally:
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    if not outcomes:
        failed = [job for job in jobs if getattr(job, "status", "") != "SUCCEEDED"]
        where = Path(config.experiment_working_directory) / experiment.id / "trials"
        raise VSPluginError(f"no trial reported a result ({len(failed)} of {len(jobs)} failed); see the trials' stderr under {where}")
    return outcomes


def _listening_line(experiment_id: str, port: int, listen_all: bool) -> str:
    """Where the manager really listens (read from the kernel); refuses an exposed manager
    unless ``listen_all``."""
    addresses = listening_addresses(port)
    exposed = [a for a in addresses if not is_loopback(a)]
    if exposed and not listen_all:
        raise VSPluginError(
            f"NNI's manager listens on {', '.join(exposed)}:{port}, reachable from other machines with no login; "
            "stopped it (pass --listen-all to allow that)"
        )
    if listen_all:
        shown = ", ".join(addresses) or "every interface"
        return (
            f"NNI experiment {experiment_id} running; web UI and REST API at http://<this machine>:{port}, listening on "
            f"{shown} (--listen-all): anyone who can reach this port can read and control the experiment, with no login"
        )
    host = addresses[0] if addresses else LOOPBACK
    host = f"[{host}]" if ":" in host else host
    return f"NNI experiment {experiment_id} running; web UI at http://{host}:{port} (this machine only)"


def optimize_mode(config: ExperimentConfig) -> str:
    """``maximize`` or ``minimize``, as the tuner's ``classArgs.optimize_mode`` says (default maximize)."""
    class_args = getattr(config.tuner, "class_args", None) or {}
    return class_args.get("optimize_mode", "maximize")


def best_trial(outcomes: list[TrialOutcome], mode: str = "maximize") -> TrialOutcome:
    """The trial with the best score (NNI's ``default`` metric) for the tuner's ``optimize_mode``."""
    choose = min if mode == "minimize" else max
    return choose(outcomes, key=lambda outcome: outcome.score)


__all__ = ["TrialOutcome", "load_experiment_config", "use_this_python", "run_experiment", "optimize_mode", "best_trial"]
