"""Settings of the structured path (``vs-plugin compress --structured``) beside :class:`CompressSettings`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from vs_plugin.errors import ConfigError
from vs_plugin.pipeline.settings import CompressSettings, FlatSettings
from vs_plugin.training.distributed import launched_by_torchrun

from .latency import DEFAULT_BATCH_SIZES, DEFAULT_REPEATS
from .pruner import PRUNE_BY, PruneConfig

#: Initial gate log sigma^2 when ``init_log_sigma2`` is not set (ours): at the core's -15 for a
#: teacher copy, log alpha sits at the -8 clip where the KL has no gradient and gates never move.
STRUCTURED_INIT_LOG_SIGMA2 = -6.0
#: Gate learning rate as a multiple of ``lr`` when ``gate_lr`` is not set (ours): a gate must travel
#: about 10 units of log alpha, a weight only a little.
GATE_LR_FACTOR = 10.0

@dataclass(frozen=True)
class StructuredSettings(FlatSettings):
    """Settings of the structured path, besides :class:`CompressSettings`.

    Attributes:
        prune_by: ``macs`` (default), ``ratio`` or ``threshold`` (see :class:`PruneConfig`).
        target_macs: pruned MACs / dense student MACs for ``macs`` (0.25 = 75% fewer).
        pruning_ratio: fraction of channel positions removed for ``ratio``.
        prune_steps: pruning steps, spread over the epochs, the last at the end.
        global_pruning: one ranking over all layers (else the same fraction per layer).
        max_layer_ratio: a layer loses at most this fraction of its channels (over all steps).
        gate_lr: learning rate of the gates (None: 10 x ``lr``).
        finetune_epochs: CE + KD epochs after pruning, on top of ``epochs`` of gate training; None
            (default): the recipe decides (:func:`vs_plugin.pipeline.structured.structured_phase_epochs`:
            three-phase, the fine-tune share of ``epochs``).
        latency_repeats: timed rounds per batch size.
        latency_batch_sizes: batch sizes timed.
        latency_threads: intra-op threads while timing (None: torch's setting; 1 avoids the
            stalls of a shared machine, see :mod:`.latency`).
    """

    WHAT = "structured setting"

    prune_by: str = "macs"
    target_macs: float = 0.5
    pruning_ratio: float = 0.5
    prune_steps: int = 1
    global_pruning: bool = True
    max_layer_ratio: float = 0.9
    gate_lr: Optional[float] = None
    finetune_epochs: Optional[int] = None
    latency_repeats: int = DEFAULT_REPEATS
    latency_batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    latency_threads: Optional[int] = None

    def __post_init__(self) -> None:
        if self.prune_by not in PRUNE_BY:
            raise ConfigError(f"prune_by must be one of {', '.join(PRUNE_BY)}, got {self.prune_by!r}")
        if isinstance(self.latency_batch_sizes, int) or not all(isinstance(b, int) and b >= 1 for b in self.latency_batch_sizes):
            raise ConfigError(f"latency_batch_sizes must be a list of integers >= 1, got {self.latency_batch_sizes!r}")
        object.__setattr__(self, "latency_batch_sizes", tuple(self.latency_batch_sizes))
        if self.finetune_epochs is not None and not (
            isinstance(self.finetune_epochs, int) and not isinstance(self.finetune_epochs, bool) and self.finetune_epochs >= 0
        ):
            raise ConfigError(f"finetune_epochs must be an integer >= 0 (or unset: the recipe's share), got {self.finetune_epochs!r}")
        if not (isinstance(self.latency_repeats, int) and self.latency_repeats >= 1):
            raise ConfigError(f"latency_repeats must be an integer >= 1, got {self.latency_repeats!r}")
        if self.latency_threads is not None and not (isinstance(self.latency_threads, int) and self.latency_threads >= 1):
            raise ConfigError(f"latency_threads must be an integer >= 1, got {self.latency_threads!r}")
        if self.gate_lr is not None and not self.gate_lr > 0:
            raise ConfigError(f"gate_lr must be > 0, got {self.gate_lr}")
        self.prune_config()  # validates the rest

    def prune_config(self, threshold: Optional[float] = None) -> PruneConfig:
        """The pruner's config; ``threshold`` is the settings' log alpha threshold (for ``threshold``)."""
        return PruneConfig(
            by=self.prune_by,
            threshold=threshold,
            pruning_ratio=self.pruning_ratio,
            target_macs_ratio=self.target_macs,
            iterative_steps=self.prune_steps,
            global_pruning=self.global_pruning,
            max_layer_ratio=self.max_layer_ratio,
        )


def check_single_process(settings: CompressSettings) -> None:
    """The structured path runs in one process, in fp32: reject torchrun and ``amp``."""
    if launched_by_torchrun():
        raise ConfigError(
            "--structured runs in one process (pruning rewrites the model, which DistributedDataParallel "
            "cannot follow); start it without torchrun"
        )
    if settings.amp != "off":
        raise ConfigError(f"amp={settings.amp!r} is not supported with --structured; use amp='off'")


def prune_epochs(epochs: int, steps: int) -> list[int]:
    """Epochs (1-based) after which the pruning steps run: evenly spread, the last at the end."""
    marks = [round(epochs * i / steps) for i in range(1, steps + 1)]
    if steps > epochs or len(set(marks)) != steps or marks[0] < 1:
        raise ConfigError(f"prune_steps ({steps}) must not exceed the student epochs ({epochs})")
    return marks



__all__ = ["STRUCTURED_INIT_LOG_SIGMA2", "GATE_LR_FACTOR", "StructuredSettings", "check_single_process", "prune_epochs"]
