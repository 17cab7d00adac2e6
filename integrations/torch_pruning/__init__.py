"""torch-pruning integration: the Variational Student's channel mode drives torch-pruning's
dependency graph, so the student comes out physically smaller on any timm/torchvision model.

- :class:`VariationalImportance`: group scores from the channel gates' log alpha;
- :func:`gate_pruners`: torch-pruning's ``customized_pruners`` for the gated layers, so any
  torch-pruning pruner prunes the gates with their channels;
- :class:`VariationalStudentPruner`: a ``BasePruner`` that trains with the VS objective
  (``regularize`` / ``update_regularizer``) and prunes by threshold, ratio or MAC budget;
- :func:`apply_masks`: NNI (or any) keep masks -> a physically pruned model;
- :func:`save_pruned` / :func:`load_pruned`: a JSON spec (model name, input, pruning plan) plus
  a state_dict, rebuilt on a fresh model without pickling modules;
- :func:`run_structured`: the ``vs-plugin compress --structured`` pipeline;
- :data:`TP_BASELINES` / :func:`run_tp_baseline`: torch-pruning baselines at matched MACs.

Only this package imports torch_pruning; the core (``vs_plugin``) never does.
"""

from .._extras import require

require("torch_pruning")  # a one-line error naming the extra, before any import of torch_pruning


from .baselines import TP_BASELINES, BaselineResult, TPBaseline, get_baseline, run_tp_baseline
from .gates import gate_pruners
from .graph import build_graph, build_pruner, opaque_layers
from .importance import FrozenImportance, MaskImportance, VariationalImportance, snapshot_scores
from .latency import measure_latency
from .macs import count_macs_params, plan_for_macs
from .masks import apply_masks, masks_from_zero_channels
from .plan import ChannelRemoval, PlanItem, apply_plan, dead_channel_plan, ranked_plan, removed_channels, zero_shifts
from .pruner import PruneConfig, PruneStep, VariationalStudentPruner
from .serialization import load_pruned, save_pruned
from vs_plugin.pipeline.structured import run_structured, structured_from_modules  # the core's structured run, named here
from .structured_settings import StructuredSettings

__all__ = [
    "gate_pruners",
    "VariationalImportance",
    "MaskImportance",
    "FrozenImportance",
    "snapshot_scores",
    "VariationalStudentPruner",
    "PruneConfig",
    "PruneStep",
    "PlanItem",
    "ChannelRemoval",
    "ranked_plan",
    "dead_channel_plan",
    "apply_plan",
    "removed_channels",
    "zero_shifts",
    "build_graph",
    "build_pruner",
    "opaque_layers",
    "apply_masks",
    "masks_from_zero_channels",
    "save_pruned",
    "load_pruned",
    "count_macs_params",
    "plan_for_macs",
    "measure_latency",
    "StructuredSettings",
    "run_structured",
    "structured_from_modules",
    "TP_BASELINES",
    "TPBaseline",
    "BaselineResult",
    "get_baseline",
    "run_tp_baseline",
]
