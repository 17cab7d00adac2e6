"""Checkpoints of a structured run, so that ``vs-plugin compress --structured --resume`` continues it.

The checkpoint is written through the core run folder (:class:`vs_plugin.pipeline.outputs.RunDirectory`:
atomic, locked, staged when overwriting) after every epoch of each phase:

- ``teacher``: the teacher being trained, its optimizer and records;
- ``student``: the trained teacher, the gated student *as pruned so far*, the pruning steps done
  (each step's plan, removed channels and MAC counts), the pruner's KL warm-up position, the
  optimizer, the records and the measurements taken at pruning time;
- ``finetune``: the same plus the plain (finalized) student being fine-tuned.

A pruned student cannot be loaded into a fresh model directly (its layers are narrower), so the
student is rebuilt as the run built it (gates included), every recorded pruning step is replayed
through the dependency graph (:func:`restore_pruner`), and only then are its weights loaded.
The random-number state is restored at the start of the next epoch, and every data order depends
on the seed and the epoch only, so a resumed run gives the same pruned model as an uninterrupted one.
The checkpoint's format and settings are checked by the core run
(:func:`vs_plugin.pipeline.run.check_resumable`).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch.nn as nn

from vs_plugin.errors import CheckpointError

from .plan import apply_plan, plan_from_json, plan_to_json
from .pruner import PruneStep, VariationalStudentPruner


def steps_to_json(steps: list[PruneStep]) -> list[dict]:
    return [
        {"step": s.step, "plan": plan_to_json(s.plan), "removed": {k: list(v) for k, v in s.removed.items()},
         "macs_before": s.macs_before, "macs_after": s.macs_after, "params_before": s.params_before, "params_after": s.params_after}
        for s in steps
    ]


def restore_pruner(pruner: VariationalStudentPruner, steps: list[dict], regularize_calls: int) -> None:
    """Replay the recorded pruning ``steps`` on ``pruner``'s freshly gated model, in order.

    Raises:
        CheckpointError: when a recorded step cannot be replayed on this model.
    """
    for record in steps:
        plan = plan_from_json(record["plan"])
        applied = apply_plan(pruner.model, pruner.DG, plan, on_group=pruner._track_inputs)
        if len(applied) != len(plan):
            raise CheckpointError(f"pruning step {record['step']} of the checkpoint could not be replayed on this model")
        pruner.current_step += 1
        pruner.history.extend(applied)
        pruner.steps.append(PruneStep(
            record["step"], applied, {k: list(v) for k, v in record["removed"].items()}, record["macs_before"],
            record["macs_after"], record["params_before"], record["params_after"],
        ))
        pruner.update_regularizer()
    pruner.regularize_calls = regularize_calls


def load_model_state(model: nn.Module, state: Mapping[str, Any], what: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0][:200]
        raise CheckpointError(f"the checkpoint's {what} does not fit the rebuilt model: {first}") from None


__all__ = ["steps_to_json", "restore_pruner", "load_model_state"]
