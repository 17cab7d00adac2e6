"""``vs-plugin compress --structured`` lives in the core (:mod:`vs_plugin.pipeline.structured`);
these names stay importable here. The adapter's part is :mod:`.channel_pruning`."""

from vs_plugin.pipeline.structured import (  # noqa: F401
    OUTPUT_FILES, REPORT, TEACHER_WEIGHTS, StructuredOutcome, loaders, open_output, run_structured, structured_from_modules,
    train_structured, train_teacher,
)

__all__ = ["REPORT", "TEACHER_WEIGHTS", "OUTPUT_FILES", "open_output", "train_teacher", "loaders", "StructuredOutcome",
           "train_structured", "structured_from_modules", "run_structured"]
