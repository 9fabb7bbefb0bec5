"""Periodic fine-tuning: new clicks from the store train the live version's
attention weights; a gated, load-tested candidate is published atomically.

The names below load on first use: the job imports TensorFlow, and the
``mmrec feedback`` commands that do not fine-tune must start without it.

Example:

    from feedback.finetune import FinetuneConfig, run_finetune
    result = run_finetune(store, "saved_models/mmrec", FinetuneConfig(train="attention"))
    result.exit_code     # 0 published, 3 rejected, 4 nothing new
"""

from feedback.finetune.config import FinetuneConfig

__all__ = ["EXIT_ERROR", "EXIT_NOTHING_NEW", "EXIT_PUBLISHED", "EXIT_REJECTED", "FinetuneConfig",
           "FinetuneResult", "JobBusyError", "read_history", "run_finetune"]


def __getattr__(name: str):
    if name in __all__:
        import importlib
        return getattr(importlib.import_module("feedback.finetune.job"), name)
    raise AttributeError(f"module 'feedback.finetune' has no attribute {name!r}")
