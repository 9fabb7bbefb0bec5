"""Training the ranking stage on the retriever's own candidate lists.

For every training click the retriever (already trained) retrieves its top N
from the user's history before that click, and the ranker learns, with a
listwise softmax, to put the click first. Lists that missed the click are
left out (and counted), not given the click in a spare slot: an inserted
click is the one candidate the retriever scored below its top N, so the
ranker learns "the least likely-looking item is the click", a shortcut that
holds on every such training list and on no held-out one. Measured on a small
shop: with insertion the ranker picked the click first on 39% of training
lists and fell to 0.005 validation NDCG@10 against retrieval's 0.011. Validation
clicks are never in a training list: the lists come from
``data.train_examples`` alone, and the best epoch is chosen on validation
NDCG@10 of the two-stage full ranking.

A known bias, measured rather than assumed away: the retriever was trained
on these very clicks, so its lists for them hold the target more often, and
its scores are more confident, than at serving time. :func:`fit_ranker`
reports the in-list share beside validation's, so the gap is visible.

Example:

    model, report = fit_ranker(retriever, data, RankerConfig(candidates=100))
    report["valid"]["NDCG@10"], report["train_candidate_recall"]
"""

from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from mmrec.config import RankerConfig
from mmrec.evaluate.model_scores import encode_users
from mmrec.evaluate.reranking import CandidateLists, evaluate_reranked, retrieve_lists
from mmrec.model.ranker import RankingModel
from mmrec.progress import progress

logger = logging.getLogger("mmrec.train")


def item_signals(retriever, data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the ranker reads of every item: the retriever's item vectors [I, D]
    (its table refreshed) and features [I, 3]: standardised log training
    clicks, then the modality gate (text, image); and the features [3] of an
    item added later, which nobody has clicked (its gate left at zero, to be
    filled in with the item's own)."""
    vectors, gates = retriever.encode_catalogue()
    retriever.item_table.assign(vectors)
    clicks = np.log1p(data.train_item_counts).astype(np.float32)
    mean, scale = float(clicks.mean()), max(float(clicks.std()), 1e-6)
    features = np.concatenate([((clicks - mean) / scale)[:, None], gates.astype(np.float32)], 1)
    return vectors, features, np.array([-mean / scale, 0.0, 0.0], np.float32)


def training_lists(retriever, data, count: int, table: np.ndarray) -> CandidateLists:
    """One list per ranker click (the split's ``ranker`` part, clicks the
    retriever never trained on) or, without any, per training click; see
    :func:`candidate_lists`. :func:`fit_ranker` drops the lists that missed
    their click and counts them."""
    examples = (data.ranker_examples if data.ranker_examples is not None
                else data.train_examples)
    return candidate_lists(retriever, examples, count, table)


def candidate_lists(retriever, examples: dict[str, np.ndarray], count: int,
                    table: np.ndarray) -> CandidateLists:
    """The retriever's top ``count`` for each example click from the history
    before it (``examples`` as :func:`mmrec.features.examples.build_examples`
    gives them), the items in that history kept out of the list but for the
    click itself (a re-click still counts); lists that missed the click are
    kept too, with all-zero labels."""
    history, mask = examples["history"], examples["history_mask"]
    users = encode_users(retriever, history, mask, examples["user"], batch_size=2048)
    num_items = len(table)

    def seen(idx: np.ndarray) -> np.ndarray:
        excluded = np.zeros((len(idx), num_items), bool)
        rows = np.repeat(np.arange(len(idx)), history.shape[1])
        flat = mask[idx].reshape(-1)
        excluded[rows[flat], history[idx].reshape(-1)[flat]] = True
        excluded[np.arange(len(idx)), examples["item"][idx]] = False
        return excluded

    return retrieve_lists(users, table, history, mask, seen, count,
                          targets=examples["item"])


def fit_ranker(retriever, data, config: RankerConfig, *, jit_compile: bool = False,
               seed: int = 0, verbose: bool = True) -> tuple[RankingModel, dict]:
    """Trains a ranker over a trained retriever's candidate lists.

    Args:
      retriever: a trained :class:`mmrec.model.two_tower.TwoTowerModel` with
        its item features attached.
      data: the run's prepared data (``mmrec.train.preparation.PreparedData``).
      config: the ranker's shape and training settings.
      jit_compile: compile the train step with XLA (the step sees indices and
        numbers only).
      seed: seeds weights and shuffling.

    Returns:
      The ranker at its best validation epoch, and a report: ``valid`` (the
      two-stage metrics of that epoch), ``best_epoch``, ``epochs`` (validation
      NDCG@10 per epoch), ``train_candidate_recall`` and
      ``valid_candidate_recall`` (share of lists holding the click; the
      training lists that do are what the ranker trains on).
    """
    tf.keras.utils.set_random_seed(seed)
    vectors, features, new_item_features = item_signals(retriever, data)
    lists = training_lists(retriever, data, config.candidates, vectors)
    report: dict = {"train_candidate_recall": lists.recall(),
                    "lists_from": ("held-out ranker clicks" if data.ranker_examples is not None
                                   else "training clicks")}
    hits = lists.labels.max(1) > 0
    if not hits.any():
        raise ValueError(f"fit_ranker: the retriever's top {config.candidates} holds none of "
                         f"the {len(lists)} training clicks; raise ranker.candidates")
    lists = CandidateLists(**{name: values[hits]
                              for name, values in lists.as_examples().items()})
    logger.info("ranker: %d training lists hold their click, %d missed it and are left out",
                int(hits.sum()), int((~hits).sum()))
    model = RankingModel(config, vectors, features, data.train_examples["history"].shape[1],
                         new_item_features)
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate),
                  jit_compile=jit_compile)
    batches = (tf.data.Dataset.from_tensor_slices(lists.as_examples())
               .shuffle(min(len(lists), 100_000), seed=seed)
               .batch(config.batch_size, drop_remainder=len(lists) >= config.batch_size)
               .prefetch(tf.data.AUTOTUNE))
    best, best_weights, history = -1.0, None, []
    for epoch in progress(range(config.epochs), desc="ranker epochs",
                          min_items=1 if verbose else config.epochs + 1):
        model.fit(batches, epochs=1, verbose=0)
        metrics = evaluate_reranked(retriever, model, data.valid, data, config.candidates)
        history.append(metrics["NDCG@10"])
        logger.info("ranker epoch %d: validation NDCG@10 %.4f", epoch + 1, metrics["NDCG@10"])
        if metrics["NDCG@10"] > best:
            best, best_weights = metrics["NDCG@10"], model.ranker.get_weights()
            report.update(valid=metrics, best_epoch=epoch + 1,
                          valid_candidate_recall=metrics["candidate_recall"])
    model.ranker.set_weights(best_weights)
    report["epochs"] = history
    return model, report
