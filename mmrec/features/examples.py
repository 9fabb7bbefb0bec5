"""Training examples as index arrays: who clicked what, after which clicks.

One example per click: the user, the clicked item, the user's previous clicks
(most recent first, padded, with a mask) and the item's share of training
clicks (its sampling probability as an in-batch negative, for the logQ
correction). A training example's history holds only earlier *training*
clicks, so nothing held out leaks in; a validation or test example's history
holds every earlier click of the user. Order is by timestamp, ties in file
order. Plain NumPy: evaluation uses it without loading TensorFlow.

Example:

    examples = build_examples(dataset.interactions, split, "train", history_length=20)
    examples["history"].shape     # (num_training_clicks, 20)
"""

from __future__ import annotations

import numpy as np

from mmrec.data.interactions import Interactions
from mmrec.data.splits import Split


def histories(interactions: Interactions, targets: np.ndarray, context: np.ndarray,
              history_length: int) -> tuple[np.ndarray, np.ndarray]:
    """For each target row, the last ``history_length`` context rows' items.

    Only context rows of the same user that come strictly before the target
    in chronological order count. Returns (items int32 [T, H], mask bool [T, H]),
    most recent first.
    """
    order = interactions.chronological_order()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    user_first_rank = np.searchsorted(interactions.user[order], np.arange(interactions.num_users))
    context_ranks = np.sort(rank[context])
    context_items = interactions.item[order[context_ranks]]
    count_before = np.searchsorted(context_ranks, rank[targets], side="left")
    user_start = np.searchsorted(context_ranks, user_first_rank[interactions.user[targets]],
                                 side="left")
    positions = count_before[:, None] - 1 - np.arange(history_length)[None, :]
    mask = positions >= user_start[:, None]
    items = np.where(mask, context_items[np.clip(positions, 0, None)] if len(context_items)
                     else 0, 0)
    return items.astype(np.int32), mask


def sampling_probabilities(interactions: Interactions, split: Split, num_items: int) -> np.ndarray:
    """Each item's share of training clicks, float32 [N] (0 for unseen items)."""
    counts = np.bincount(interactions.item[split.train], minlength=num_items)
    return (counts / max(counts.sum(), 1)).astype(np.float32)


def build_examples(interactions: Interactions, split: Split, part: str, history_length: int,
                   num_items: int | None = None) -> dict[str, np.ndarray]:
    """The index arrays of one split part's examples."""
    if history_length < 1:
        raise ValueError(f"history_length must be at least 1, got {history_length}")
    targets = split.part(part)
    context = split.train if part == "train" else np.arange(len(interactions))
    history, mask = histories(interactions, targets, context, history_length)
    num_items = num_items or int(interactions.item.max()) + 1
    probability = sampling_probabilities(interactions, split, num_items)
    return {
        "user": interactions.user[targets].astype(np.int32),
        "item": interactions.item[targets].astype(np.int32),
        "history": history,
        "history_mask": mask,
        "candidate_sampling_probability": probability[interactions.item[targets]],
    }
