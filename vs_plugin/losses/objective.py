"""The Variational Student objective: every loss term combined, callable from any training loop.

.. math::

    L = w_{CE}\\,CE(z_s, y)
      + \\lambda_T\\,T^2\\,KL(\\mathrm{softmax}(z_t/T)\\,\\|\\,\\mathrm{softmax}(z_s/T))
      + \\lambda_V\\,\\beta(step)\\,\\frac{1}{\\max(N, N_0)} \\sum_{layers} KL(q(W_s)\\,\\|\\,p(W_s))
      + \\lambda_g\\,BSR(W_t, W_s)
      + \\gamma\\,L_{LP}

Hegde, Prasad, Hebbalaguppe, Kumar, "Variational Student", ICASSP 2020 (arXiv 1910.12061), with
the open choices fixed in docs/method.md. w_CE is 1, or 1 - lambda_T with ``ce_weighting="complement"``.
N is the number of training samples actually used, so the KL term is a per-sample ELBO term.
N_0 (``kl_min_samples``, 0 = off here; ``vs-plugin compress`` uses 1000) tempers it on small data:
with a few hundred samples the exact KL/N outweighs the data terms and prunes the student to
chance, so the KL is divided by at least N_0 (the same as a KL weight of N/N_0 below N_0 samples).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from .bsr import BSR_NORMS, PER_SAMPLE_NORMS, BlockSparseRegulariser
from .kd import KD_REDUCTIONS, kd_loss
from .kl import KLWarmup, variational_kl
from .kl_controller import KLController
from .locality import locality_preserving_loss
from .update_check import UpdateCheck

CE_WEIGHTINGS = ("full", "complement")
#: Training calls after which the objective checks that the variational parameters move.
DEFAULT_CHECK_UPDATES = 20
TERMS = ("loss", "ce", "kd", "kl", "bsr", "lp")


@dataclass(frozen=True)
class ObjectiveConfig:
    """Weights and options of the loss terms.

    Attributes:
        kd_weight: lambda_T; 0 trains without a teacher signal (Sparse VD alone).
        temperature: T of the soft targets.
        kd_reduction: ``"batchmean"`` (per sample, default) or ``"elementmean"`` (2 T^2 form).
        ce_weighting: ``"full"`` (CE weight 1) or ``"complement"`` (CE weight 1 - lambda_T).
        kl_weight: lambda_V, the weight of the KL/N term (0 = plain KD of a dense student).
        bsr_weight: lambda_g; 0 switches the Block Sparse Regulariser off.
        bsr_norm: ``"l1_inf"`` (default), ``"l2_1"`` or ``"group"`` (a teacher-guided group lasso over
            input units, divided by max(N, N_0) like the KL; see :mod:`vs_plugin.losses.bsr`).
        bsr_mapping: explicit student layer -> teacher layer (or None) pairs for the BSR.
        lp_gamma: gamma of the locality-preserving loss; 0 switches it off.
        lp_k: neighbours in teacher feature space.
        lp_sigma2: heat-kernel width, or ``"median"``.
        lp_student_layer / lp_teacher_layer: feature layers; None for the input of the head.
        compile_kl: True: a KL the objective computes itself (one not already computed by the
            student's forward in this step) follows the process-wide compile mode of
            :mod:`vs_plugin.layers.compiled` (``torch.compile`` where it pays); False: eager.
            The same numbers either way.
        kl_min_samples: N_0; the KL is divided by max(N, N_0) (0: by N, the exact ELBO).
    """

    kd_weight: float = 1.0
    temperature: float = 4.0
    kd_reduction: str = "batchmean"
    ce_weighting: str = "full"
    kl_weight: float = 1.0
    bsr_weight: float = 0.0
    bsr_norm: str = "l1_inf"
    bsr_mapping: Optional[Mapping[str, Optional[str]]] = None
    lp_gamma: float = 0.0
    lp_k: int = 5
    lp_sigma2: Union[float, str] = 2.0
    lp_student_layer: Optional[str] = None
    lp_teacher_layer: Optional[str] = None
    compile_kl: bool = True
    kl_min_samples: int = 0

    def __post_init__(self) -> None:
        for name in ("kd_weight", "kl_weight", "bsr_weight", "lp_gamma"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value >= 0):
                raise ConfigError(f"{name} must be a number >= 0, got {value!r}")
        if not (isinstance(self.temperature, (int, float)) and self.temperature > 0):
            raise ConfigError(f"temperature must be > 0, got {self.temperature!r}")
        if self.kd_reduction not in KD_REDUCTIONS:
            raise ConfigError(f"kd_reduction must be one of {', '.join(KD_REDUCTIONS)}, got {self.kd_reduction!r}")
        if self.ce_weighting not in CE_WEIGHTINGS:
            raise ConfigError(f"ce_weighting must be one of {', '.join(CE_WEIGHTINGS)}, got {self.ce_weighting!r}")
        if self.ce_weighting == "complement" and self.kd_weight > 1:
            raise ConfigError(f"ce_weighting='complement' needs kd_weight <= 1, got {self.kd_weight}")
        if self.bsr_norm not in BSR_NORMS:
            raise ConfigError(f"bsr_norm must be one of {', '.join(BSR_NORMS)}, got {self.bsr_norm!r}")
        if not (isinstance(self.kl_min_samples, int) and self.kl_min_samples >= 0):
            raise ConfigError(f"kl_min_samples must be an integer >= 0, got {self.kl_min_samples!r}")
        if not (isinstance(self.lp_k, int) and self.lp_k >= 1):
            raise ConfigError(f"lp_k must be an integer >= 1, got {self.lp_k!r}")
        if not (self.lp_sigma2 == "median" or (isinstance(self.lp_sigma2, (int, float)) and self.lp_sigma2 > 0)):
            raise ConfigError(f"lp_sigma2 must be > 0 or 'median', got {self.lp_sigma2!r}")

    @property
    def ce_weight(self) -> float:
        return 1.0 - self.kd_weight if self.ce_weighting == "complement" else 1.0

    @property
    def uses_teacher(self) -> bool:
        return self.kd_weight > 0 or self.lp_gamma > 0

    def to_dict(self) -> dict:
        data = asdict(self)
        if self.bsr_mapping is not None:
            data["bsr_mapping"] = dict(self.bsr_mapping)
        return data


class VariationalStudentObjective(nn.Module):
    """Computes every term of the Variational Student loss for one batch.

    Args:
        student: the variational student (its layers give the KL and BSR terms).
        teacher: the frozen teacher (its weights set the BSR blocks); None trains without one.
        config: term weights and options.
        num_train_samples: N, the number of training samples actually used.

        warmup: the KL warm-up; without an explicit ``beta`` a call uses ``warmup.beta(global_step)``,
            where ``global_step`` counts the calls made with gradients enabled (it does not restart
            with each epoch; set it when resuming). None: beta 1.
        check_updates: after this many training calls (gradients enabled), check that the
            student's variational parameters have changed since the first one, and raise
            :class:`vs_plugin.errors.TrainingStalled` if none did: the optimizer does not hold them
            (typically it was created before ``variationalize``). 0 switches the check off.
        kl_controller: scales the KL weight so the student's sparsity tracks a target (see
            :mod:`vs_plugin.losses.kl_controller`); it observes every training call. None: the
            KL weight stays ``config.kl_weight``.

    Call it with the batch's outputs; it returns ``{'loss', 'ce', 'kd', 'kl', 'bsr', 'lp'}``:
    ``loss`` is the weighted total to back-propagate, the others the unweighted terms (``kl``
    already divided by max(N, N_0), and ``bsr`` too for the group norm; disabled terms are 0).
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: Optional[nn.Module] = None,
        config: Optional[ObjectiveConfig] = None,
        *,
        num_train_samples: int,
        warmup: Optional[KLWarmup] = None,
        check_updates: int = DEFAULT_CHECK_UPDATES,
        kl_controller: Optional[KLController] = None,
    ) -> None:
        super().__init__()
        self.config = config or ObjectiveConfig()
        if not (isinstance(num_train_samples, int) and num_train_samples > 0):
            raise ConfigError(f"num_train_samples must be a positive integer, got {num_train_samples!r}")
        if teacher is None and self.config.uses_teacher:
            raise ConfigError("kd_weight > 0 or lp_gamma > 0 needs a teacher; pass one or set both weights to 0")
        if warmup is not None and not isinstance(warmup, KLWarmup):
            raise ConfigError(f"warmup must be a vs_plugin.KLWarmup or None, got {type(warmup).__name__}")
        self.num_train_samples = num_train_samples
        self.warmup = warmup
        self.kl_controller = kl_controller
        #: Training calls so far (calls with gradients enabled); drives ``warmup``.
        self.global_step = 0
        self._update_check = UpdateCheck(student, check_updates)
        #: The KL's divisor: N, or N_0 when there are fewer samples (see the module docstring).
        self.kl_divisor = max(num_train_samples, self.config.kl_min_samples)
        self._student = [student]  # referenced, not owned: no duplicate parameters in state_dict
        self.bsr = (
            BlockSparseRegulariser(student, teacher, self.config.bsr_norm, self.config.bsr_mapping)
            if self.config.bsr_weight > 0
            else None
        )

    def forward(
        self,
        student_logits: Tensor,
        teacher_logits: Optional[Tensor] = None,
        target: Optional[Tensor] = None,
        *,
        beta: Optional[float] = None,
        student_features: Optional[Tensor] = None,
        teacher_features: Optional[Tensor] = None,
    ) -> dict[str, Tensor]:
        """The loss terms of one batch.

        Args:
            student_logits: (B, C) student outputs.
            teacher_logits: (B, C) teacher outputs (needed when kd_weight > 0).
            target: (B,) class indices.
            beta: KL warm-up factor in [0, 1] (see :class:`vs_plugin.losses.kl.KLWarmup`); None:
                ``warmup.beta(global_step)``, or 1 without a warm-up.
            student_features / teacher_features: features for the locality-preserving loss.
        """
        cfg = self.config
        if target is None:
            raise ConfigError("the objective needs the batch's targets for the cross-entropy term")
        training = torch.is_grad_enabled() and student_logits.requires_grad
        if beta is None:
            beta = self.warmup.beta(self.global_step) if self.warmup is not None else 1.0
        if training:
            self._update_check.observe()
            self.global_step += 1
            if self.kl_controller is not None:
                self.kl_controller.observe(self._student[0])
        if not 0.0 <= beta <= 1.0:
            raise ConfigError(f"beta must lie in [0, 1], got {beta}")
        zero = student_logits.new_zeros((), dtype=torch.float32)
        ce = F.cross_entropy(student_logits.float(), target)
        kd = zero
        if cfg.kd_weight > 0:
            if teacher_logits is None:
                raise ConfigError("kd_weight > 0 but no teacher logits were given")
            kd = kd_loss(student_logits.float(), teacher_logits.float(), cfg.temperature, cfg.kd_reduction)
        kl, bsr = self.regularisers(zero.device)
        lp = zero
        if cfg.lp_gamma > 0:
            if student_features is None or teacher_features is None:
                raise ConfigError("lp_gamma > 0 but student or teacher features were not given")
            lp = locality_preserving_loss(student_features.float(), teacher_features.float(), cfg.lp_k, cfg.lp_sigma2)
        loss = cfg.ce_weight * ce + cfg.kd_weight * kd + self.kl_weight * beta * kl + cfg.bsr_weight * bsr + cfg.lp_gamma * lp
        return {"loss": loss, "ce": ce, "kd": kd, "kl": kl, "bsr": bsr, "lp": lp}

    @property
    def kl_weight(self) -> float:
        """lambda_V now: the configured weight, times the controller's scale when there is one."""
        scale = self.kl_controller.scale if self.kl_controller is not None else 1.0
        return self.config.kl_weight * scale

    def regularisers(self, device: Optional[torch.device] = None) -> tuple[Tensor, Tensor]:
        """(kl, bsr), in fp32 whatever the autocast: the terms that depend on the student's weights
        alone, unweighted (the KL divided by max(N, N_0), the BSR too for per-sample norms; 0 when off)."""
        cfg = self.config
        if device is None:
            device = next(iter(self._student[0].parameters()), torch.zeros(())).device
        zero = torch.zeros((), device=device)
        with torch.autocast(device_type=device.type, enabled=False):  # fp32 even under mixed precision
            kl = variational_kl(self._student[0], None if cfg.compile_kl else False).to(device) / self.kl_divisor if cfg.kl_weight > 0 else zero
            bsr = self.bsr().to(device) if self.bsr is not None else zero
        if cfg.bsr_norm in PER_SAMPLE_NORMS:
            bsr = bsr / self.kl_divisor
        return kl, bsr

    def penalty(self, beta: float = 1.0, device: Optional[torch.device] = None) -> Tensor:
        """lambda_V * beta * KL / max(N, N_0) + lambda_g * BSR: the loss's weight terms, for loops that
        add them to the gradients apart from the data terms (torch-pruning's ``regularize``)."""
        kl, bsr = self.regularisers(device)
        return self.kl_weight * beta * kl + self.config.bsr_weight * bsr
