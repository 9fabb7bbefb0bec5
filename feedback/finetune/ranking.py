"""Fine-tuning the ranking stage on a window of clicks, beside the retriever.

A version that serves two stages re-ranks retrieval's top N with a ranker
that reads the retriever's item vectors. When a job moves the retriever's
attention weights those vectors move too, so the ranker is carried over onto
the candidate's vectors and gates (:meth:`RankingModel.over`) and then, like
the retriever, nudged on the window: for each new (and replayed) click, the
candidate retriever's top N from the history before it, and the ranker's
listwise softmax puts the click first. Lists whose top N missed the click
teach the ranker nothing and are counted, not padded with the click (see
:mod:`mmrec.train.ranker_fitting` for why an inserted click misleads it).

Which ranker weights move follows the job's scope: ``attention`` and
``attention+ids`` move the candidate-aware attention (the ranker has no id
vectors), ``all`` every ranker weight. The step size is a hundredth of the
ranker's own training step, for the reason the retriever's is a hundredth of
training's (:class:`feedback.finetune.config.FinetuneConfig`), unless
``FinetuneConfig.ranker_step_size`` sets it.

Example:

    tuned, report = finetune_ranker(live.ranker, candidate.model, training, config)
    report["lists"], report["missed"], report["loss"]
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mmrec.model.ranker import RankingModel, listwise_softmax_loss
from mmrec.train.ranker_fitting import candidate_lists

from feedback.finetune.config import FinetuneConfig


def ranker_variables(ranker: RankingModel, scope: str) -> list[tf.Variable]:
    """The ranker weights a job scope trains (empty: nothing to train, as for
    the mean-history ablation under ``attention``)."""
    if scope == "all":
        return list(ranker.ranker.trainable_variables)
    return ranker.attention_variables()


def finetune_ranker(ranker: RankingModel, retriever, examples: dict[str, np.ndarray],
                    config: FinetuneConfig, item_vectors: np.ndarray | None = None,
                    gates: np.ndarray | None = None) -> tuple[RankingModel, dict]:
    """A copy of ``ranker`` over ``retriever``'s item vectors, fine-tuned on
    ``examples``; the given ranker is not changed.

    Args:
      ranker: the live version's ranking stage.
      retriever: the (fine-tuned) two-tower model the new version serves.
      examples: the clicks to learn from (user, item, history, history_mask).
      config: the job's scope, epochs, batch size, seed and step size.
      item_vectors, gates: the retriever's catalogue encoding, when the
        caller has it (else encoded here).

    Returns:
      The tuned ranker and a report: lists used and missed, trained
      variables, the step size and the mean loss of each epoch (empty when
      nothing was trained).
    """
    if item_vectors is None or gates is None:
        item_vectors, gates = retriever.encode_catalogue()
    tuned = ranker.over(item_vectors, gates)
    variables = ranker_variables(tuned, config.train)
    step_size = config.ranker_step_size or tuned.config.learning_rate / 100
    report: dict = {"trained_variables": [
        {"name": v.name, "parameters": int(np.prod(v.shape))} for v in variables],
        "step_size": step_size, "loss": []}
    retriever.item_table.assign(item_vectors)
    count = min(tuned.config.candidates, len(item_vectors))
    lists = candidate_lists(retriever, examples, count, np.asarray(item_vectors))
    hits = lists.labels.max(1) > 0
    report.update(lists=int(hits.sum()), missed=int((~hits).sum()))
    if not variables or not hits.any():
        report["skipped"] = ("no ranker weights in this scope" if not variables
                             else f"no click is in its retriever's top {count}")
        return tuned, report
    kept = {name: values[hits] for name, values in lists.as_examples().items()}
    batches = (tf.data.Dataset.from_tensor_slices(kept)
               .shuffle(len(kept["labels"]), seed=config.seed)
               .batch(min(config.batch_size, len(kept["labels"]))))
    optimizer = tf.keras.optimizers.Adam(step_size)

    @tf.function(reduce_retracing=True)
    def step(batch):
        with tf.GradientTape() as tape:
            scores, _ = tuned.score_lists(batch["history"], batch["history_mask"],
                                          batch["candidates"], batch["retrieval_scores"],
                                          training=True)
            loss = listwise_softmax_loss(scores, batch["labels"])
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    for _ in range(config.epochs):
        losses = [float(step(batch)) for batch in batches]
        report["loss"].append(float(np.mean(losses)))
    return tuned, report
