"""The fine-tuning job's settings, in one dataclass with documented defaults.

Example:

    config = FinetuneConfig(train="attention+ids", replay_share=0.5)
    config = FinetuneConfig.from_dict({"epochs": 2, "event_weights": {"purchase": 4.0}})
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from mmrec.typed_fields import checked_values

from feedback.store.config import normal_kind

TRAIN_SCOPES = ("attention", "attention+ids", "all")


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """How a fine-tuning job trains, judges and publishes.

    Attributes:
      train: which weights move. "attention" (the default): the cross-modal
        attention, the modality gate and the history attention pooling, the
        layers that decide how a user's clicks and an item's text and picture
        are weighed, so fresh clicks reweigh what the model already knows
        without re-learning it; "attention+ids" adds the item- and user-id
        vectors (an item added from content gets a trained id vector once it
        is clicked); "all" trains every weight. Batch-norm statistics never
        move.
      event_weights: the weight of each positive event kind in the loss;
        kinds not named (impressions) are not positives.
      replay_share: replayed original training clicks per new click: a
        sample of what the version learned from, mixed in so that it is not
        forgotten (0 replays nothing).
      epochs: passes over the new (and replayed) clicks.
      step_size: Adam's step size: a hundredth of training's peak, because
        the job nudges a trained model with a fresh optimizer, whose first
        steps move every weight by about the full step size. Chosen on the
        jobs' own gate numbers (their recent holdout and the original
        validation split, never a test holdout) in ``mmrec bench feedback``
        (docs/BENCHMARKS.md): at 0.0003, a tenth of training's peak, the
        attention-only job lost 5-40% of validation NDCG@10 and was rejected.
      ranker_step_size: Adam's step size for the ranking stage of a version
        that has one (None: a hundredth of the ranker's own training step,
        the retriever's rule). The scope picks its weights: the
        candidate-aware attention, or every ranker weight under "all".
      batch_size: clicks per batch (fewer if the window is smaller).
      recent_tolerance: the candidate may score at most this much lower
        (relative NDCG@10) than the live version on the recent holdout.
      forgetting_tolerance: the largest relative drop of NDCG@10 on the
        version's original validation split.
      gate_confidence: how sure the gate must be that a fall past a
        tolerance is real before it rejects: the one-sided confidence of the
        paired per-query change (feedback/finetune/gate.py). 0.5 judges the
        means alone, as a bare threshold does, where noise can be measured
        (two or more queries that did not all move alike).
      min_recent_ndcg, min_validation_ndcg: absolute floors (None: none); a
        first version with nothing live is judged on floors alone.
      max_events: events read per run (the rest wait for the next run).
      seed: shuffling and the replay sample.
    """

    train: str = "attention"
    event_weights: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: {"click": 1.0, "add_to_cart": 2.0, "purchase": 3.0})
    replay_share: float = 0.25
    epochs: int = 1
    step_size: float = 0.00003
    ranker_step_size: float | None = None
    batch_size: int = 256
    recent_tolerance: float = 0.02
    forgetting_tolerance: float = 0.02
    gate_confidence: float = 0.95
    min_recent_ndcg: float | None = None
    min_validation_ndcg: float | None = None
    max_events: int = 1_000_000
    seed: int = 42

    def __post_init__(self) -> None:
        if self.train not in TRAIN_SCOPES:
            raise ValueError(f"finetune.train must be one of {TRAIN_SCOPES}, got {self.train!r}")
        weights = {normal_kind(str(k)): float(v) for k, v in dict(self.event_weights).items()}
        if not weights or min(weights.values()) <= 0:
            raise ValueError(f"finetune.event_weights must give positive weights, got {weights}")
        object.__setattr__(self, "event_weights", weights)
        for name in ("replay_share", "recent_tolerance", "forgetting_tolerance"):
            if getattr(self, name) < 0:
                raise ValueError(f"finetune.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.5 <= self.gate_confidence < 1:
            raise ValueError(f"finetune.gate_confidence must be in [0.5, 1), got "
                             f"{self.gate_confidence}")
        for name in ("epochs", "batch_size", "max_events"):
            if getattr(self, name) < 1:
                raise ValueError(f"finetune.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("step_size", "ranker_step_size"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"finetune.{name} must be positive, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "FinetuneConfig":
        """From a ``[finetune]`` TOML table: unknown keys and wrong types refused."""
        return cls(**checked_values(cls, dict(values), "finetune"))
