"""Block Sparse Regulariser over the concatenated teacher and student weights.

The Variational Student paper (Hegde et al., ICASSP 2020) applies a block sparse regulariser to
"a concatenated tensor of teacher and student network weights"; one survey transcribes it as a
mixed l_{1,inf} norm. The reading below is ours (docs/method.md, "Block Sparse Regulariser"):

- student layer i is paired with a teacher layer (same name when all names match, else by order
  among layers of the same kind, or an explicit mapping);
- W_{T:S} = [W_t ; theta_s] is concatenated along the output axis, so the block of input unit m
  is everything that reads m: W_{T:S}[:, m, ...]. The narrower input is zero-padded;
- l_{1,inf} (default):  BSR = sum_m max |W_{T:S}[:, m, ...]|
  l_{2,1}:              BSR = sum_m || W_{T:S}[:, m, ...] ||_2
- the teacher part is constant (no gradient): it sets how large each block already is, so inputs
  the teacher ignores are pushed to zero in the student first;
- student layers with no teacher partner get the student-only block norm.

Because the teacher is frozen, its per-block statistic is computed once; the concatenated norm
is then max(t_m, s_m) for l_{1,inf} and sqrt(t_m^2 + s_m^2) for l_{2,1}, which equals the norm of
the concatenated block and also works when kernel sizes differ.

Both readings above are defective with a frozen teacher (docs/method.md, "Block Sparse Regulariser"): l_{1,inf} sends
gradient only to the single largest student weight of a block, capping the most important
weights. The ``group`` reading is a real group penalty over the student's input units (a group
lasso, Yuan & Lin 2006; Wen et al. 2016 for network layers), guided by the teacher only where
unit m means the same thing in both networks:

    group:  BSR = sum_m g_m || theta_s[:, m, ...] ||_2,
            g_m = mean_k(t_k) / (t_m + eps), clipped to [1/GUIDE_CAP, GUIDE_CAP], mean-normalised,

with t_m the teacher's column norm || W_t[:, m, ...] ||_2. The guide applies when the input spaces
correspond (the layer reading the data, or a student layer of the teacher layer's exact shape, as
in a student copied from the teacher); elsewhere g_m = 1. The objective scales this reading like
the KL (divided by max(N, N_0)), so one weight means the same on any dataset size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import torch
import torch.nn as nn
from torch import Tensor

from ..errors import ConfigError
from ..layers.base import VariationalLayer
from ..variationalize import stem_name

BSR_NORMS = ("l1_inf", "l2_1", "group")
#: Norms whose value the objective divides by the number of training samples, like the KL.
PER_SAMPLE_NORMS = ("group",)
#: The teacher's guide never weighs one input group more than this many times the average.
GUIDE_CAP = 10.0
#: Added under the square root of l_{2,1} so that the gradient at an all-zero block is finite.
L21_EPS = 1e-12


def block_statistic(weight: Tensor, norm: str) -> Tensor:
    """Per input unit m (axis 1): max |W[:, m, ...]| for l1_inf, sum W[:, m, ...]^2 for l2_1 and group."""
    if weight.dim() < 2:
        raise ConfigError(f"BSR needs weights with an input axis, got shape {tuple(weight.shape)}")
    per_input = weight.to(torch.promote_types(weight.dtype, torch.float32)).transpose(0, 1).reshape(weight.shape[1], -1)
    if norm == "l1_inf":
        return per_input.abs().amax(dim=1)
    if norm in ("l2_1", "group"):
        return per_input.pow(2).sum(dim=1)
    raise ConfigError(f"BSR norm must be one of {', '.join(BSR_NORMS)}, got {norm!r}")


def _pad_to(x: Tensor, length: int) -> Tensor:
    return x if x.shape[0] == length else torch.cat([x, x.new_zeros(length - x.shape[0])])


def block_sparse_regulariser(student_weight: Tensor, teacher_weight: Optional[Tensor] = None, norm: str = "l1_inf") -> Tensor:
    """BSR of one layer pair; see the module docstring for the formula.

    Args:
        student_weight: theta of the student layer, (out_s, in_s, ...).
        teacher_weight: weight of the partner teacher layer, (out_t, in_t, ...), or None.
        norm: ``"l1_inf"`` or ``"l2_1"``.
    """
    teacher_stat = None if teacher_weight is None else block_statistic(teacher_weight.detach(), norm)
    return combine_blocks(block_statistic(student_weight, norm), teacher_stat, norm)


def teacher_guide(teacher_stat: Tensor) -> Tensor:
    """g_m = mean(t) / (t_m + eps), clipped to [1/GUIDE_CAP, GUIDE_CAP] and normalised to mean 1.

    ``teacher_stat`` holds the squared column norms t_m^2 (:func:`block_statistic` with "group").
    """
    norms = teacher_stat.clamp_min(0).sqrt()
    guide = (norms.mean() / (norms + L21_EPS)).clamp(1.0 / GUIDE_CAP, GUIDE_CAP)
    return guide / guide.mean()


def group_penalty(student_stat: Tensor, guide: Optional[Tensor]) -> Tensor:
    """sum_m g_m sqrt(s_m + eps): a group lasso over the student's input units."""
    norms = torch.sqrt(student_stat + L21_EPS)
    return norms.sum() if guide is None else (guide.to(norms) * norms).sum()


def combine_blocks(student_stat: Tensor, teacher_stat: Optional[Tensor], norm: str) -> Tensor:
    """Sum over blocks of the norm of [teacher block ; student block], narrower side zero-padded.

    For ``group``, ``teacher_stat`` is the guide g (or None): see :func:`group_penalty`.
    """
    if norm == "group":
        return group_penalty(student_stat, teacher_stat)
    if teacher_stat is not None:
        width = max(student_stat.shape[0], teacher_stat.shape[0])
        student_stat = _pad_to(student_stat, width)
        teacher_stat = _pad_to(teacher_stat.to(student_stat), width)
    if norm == "l1_inf":
        return student_stat.sum() if teacher_stat is None else torch.maximum(student_stat, teacher_stat).sum()
    total = student_stat if teacher_stat is None else student_stat + teacher_stat
    return torch.sqrt(total + L21_EPS).sum()


@dataclass(frozen=True)
class LayerPair:
    student: str
    teacher: Optional[str]


def pair_layers(
    student: nn.Module, teacher: Optional[nn.Module], mapping: Optional[Mapping[str, Optional[str]]] = None
) -> list[LayerPair]:
    """Pair each variational layer of the student with a teacher layer (the rules in docs/method.md).

    Same name when every student layer's name is a teacher layer of the same kind; otherwise the
    i-th student layer of a kind with the i-th teacher layer of that kind. ``mapping``
    (student name -> teacher name or None) overrides both.
    """
    student_layers = [(n, m) for n, m in student.named_modules() if isinstance(m, VariationalLayer)]
    if teacher is None:
        return [LayerPair(n, None) for n, _ in student_layers]
    teacher_modules = dict(teacher.named_modules())
    by_name = all(n in teacher_modules and isinstance(teacher_modules[n], m.plain_type) for n, m in student_layers)
    pairs = []
    unpaired_teacher_layers: dict[type, list[str]] = {}
    for name, layer in student_layers:
        if by_name:
            pairs.append(LayerPair(name, name))
            continue
        kind = layer.plain_type
        if kind not in unpaired_teacher_layers:
            unpaired_teacher_layers[kind] = [n for n, m in teacher.named_modules() if isinstance(m, kind)]
        queue = unpaired_teacher_layers[kind]
        pairs.append(LayerPair(name, queue.pop(0) if queue else None))
    if mapping:
        student_names = {n for n, _ in student_layers}
        for s_name, t_name in mapping.items():
            if s_name not in student_names:
                raise ConfigError(
                    f"BSR mapping names student layer {s_name!r}, which is not a variational layer; "
                    f"known: {', '.join(sorted(student_names))}"
                )
            if t_name is not None and t_name not in teacher_modules:
                raise ConfigError(f"BSR mapping names teacher layer {t_name!r}, which the teacher does not have")
        pairs = [LayerPair(p.student, mapping.get(p.student, p.teacher)) for p in pairs]
    return pairs


class BlockSparseRegulariser(nn.Module):
    """Sum of :func:`block_sparse_regulariser` over the student's variational layers.

    The teacher's per-block statistics (or, for ``group``, the guide where the input spaces
    correspond: the first layer, or a layer of the teacher's exact shape) are computed once here
    (the teacher is frozen) and kept as buffers, so the teacher module itself is not held.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: Optional[nn.Module] = None,
        norm: str = "l1_inf",
        mapping: Optional[Mapping[str, Optional[str]]] = None,
    ) -> None:
        super().__init__()
        if norm not in BSR_NORMS:
            raise ConfigError(f"BSR norm must be one of {', '.join(BSR_NORMS)}, got {norm!r}")
        self.norm = norm
        self.pairs = pair_layers(student, teacher, mapping)
        self._student = [student]  # not a submodule: the objective does not own the student
        reads_data = (stem_name(student), None if teacher is None else stem_name(teacher))
        for index, pair in enumerate(self.pairs):
            stat = None
            if pair.teacher is not None:
                weight = teacher.get_submodule(pair.teacher).weight
                stat = block_statistic(weight.detach(), norm)
                if norm == "group":
                    student_weight = student.get_submodule(pair.student).weight
                    same_space = (pair.student, pair.teacher) == reads_data and weight.shape[1] == student_weight.shape[1]
                    stat = teacher_guide(stat) if same_space or weight.shape == student_weight.shape else None
            self.register_buffer(f"teacher_stat_{index}", stat, persistent=False)
        self._full_stats = [getattr(self, f"teacher_stat_{i}") for i in range(len(self.pairs))]

    def keep_inputs(self, kept: Mapping[str, Tensor]) -> None:
        """After channel pruning: restrict each teacher statistic to the input units (numbered as in the
        unpruned student) that student layer ``name`` still reads, for every ``name`` in ``kept``."""
        for index, pair in enumerate(self.pairs):
            full = self._full_stats[index]
            if pair.student in kept and full is not None:
                units = kept[pair.student].to(full.device)
                setattr(self, f"teacher_stat_{index}", full[units[units < full.numel()]])

    def forward(self) -> Tensor:
        student = self._student[0]
        total = None
        for index, pair in enumerate(self.pairs):
            weight = student.get_submodule(pair.student).weight
            value = combine_blocks(block_statistic(weight, self.norm), getattr(self, f"teacher_stat_{index}"), self.norm)
            total = value if total is None else total + value
        if total is None:
            return torch.zeros(())
        return total
