"""``Recommender``: recommendations with explanations from an exported version.

The Python way to use an mmrec model. It loads a version that ``mmrec export``
wrote (the same SavedModel TF Serving loads), computes the user's vector in
the graph, scores the catalogue in NumPy (or with a ScaNN index on large
catalogues), re-ranks the top N with the version's ranker when it has one,
and explains each result: the history clicks that weighed most (for that
item, when the ranker ordered it), and the modality gate's weights of its
text and its picture.

A user is scored on their recent clicks merged ahead of the history frozen in
the version (duplicates dropped, the newest H kept). The recent clicks come
from the ``history`` argument, else the ``history_source`` (anything with
``recent_items(user_id, limit)``, such as the feedback store), so a click
changes the next recommendation without retraining; with neither, the frozen
history alone. An unknown user with no history gets the popularity list,
flagged as such. What is left out is one contract with the SavedModel's
``recommend_with_history``: for a known user every item seen in the exported
log, and for any user every recent item given.

Example:

    recommender = Recommender.load("saved_models/mmrec")
    for rec in recommender.recommend("196", k=5):
        print(rec.item_id, rec.title, round(rec.score, 3), rec.explanation.because)
    recommender.reload()          # picks up a newer version, no failed calls
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

import mmrec  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the WordPiece ops the graph uses)

from mmrec._tf_env import quiet_native_noise
from mmrec.export.layout import VersionFiles, versions

logger = logging.getLogger("mmrec.serve")
DEFAULT_MODEL_DIR = "saved_models/mmrec"


class RecentItems(Protocol):
    """Anything that can answer "the recent items of this user", newest first.

    ``since`` (epoch seconds) asks only for items clicked after that moment: the
    Recommender passes the time its version's data reaches (``data_until``), so
    that clicks the version already holds are not counted twice or out of order.
    The feedback store is one such source; serving imports none.
    """

    def recent_items(self, user_id: str, limit: int,
                     since: float | None = None) -> Sequence[str]: ...


@dataclasses.dataclass(frozen=True)
class Explanation:
    """Why an item was recommended.

    Attributes:
      because: (item_id, title, attention weight) of the history clicks that
        drew most attention, strongest first.
      text_gate, image_gate: the modality gate's weights for the recommended
        item: how the fusion weighed the text side of its content against the
        image side (they sum to 1 over the modalities the item has). They are
        not shares of the item vector: the content projection and the id
        vector come after the gate, and the two sides differ in scale.
      fallback: "popularity" when the user was unknown and had no history.
      reranked: True when the ranking stage ordered the item; ``because`` then
        holds the history clicks that weighed most for this item in
        particular (the ranker reads the history once per candidate), not
        the retrieval's one attention map for the whole list.
    """

    because: tuple[tuple[str, str, float], ...]
    text_gate: float
    image_gate: float
    fallback: str | None = None
    reranked: bool = False


@dataclasses.dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    title: str
    metadata: dict
    explanation: Explanation


@dataclasses.dataclass
class _Version:
    """Everything one loaded version needs; swapped whole on reload."""

    number: int
    path: Path
    signatures: dict
    item_ids: np.ndarray
    item_index: dict[str, int]
    embeddings: np.ndarray
    popularity: np.ndarray
    seen_indptr: np.ndarray
    seen_items: np.ndarray
    user_index: dict[str, int]
    gates: np.ndarray
    retired: np.ndarray
    metadata: dict[str, list]
    history_length: int
    data_until: float | None
    index: object | None
    loaded: object = None  # the restored SavedModel; keeps its resources alive
    candidates: int = 0    # N the ranking stage re-orders; 0: retrieval alone


class Recommender:
    """Recommendations from one exported version, reloadable while in use.

    Args:
      model_dir: the folder of versions (``saved_models/mmrec``).
      version: a version number; None means the latest.
      history_source: optional fresh history (e.g. a feedback store).
      scann_min_items: catalogues at least this large are searched with a
        ScaNN index when ``scann`` is installed; smaller ones, and any failure,
        use exact brute force.
    """

    def __init__(self, model_dir: str | os.PathLike = DEFAULT_MODEL_DIR,
                 version: int | None = None, history_source: RecentItems | None = None,
                 scann_min_items: int = 200_000) -> None:
        self.model_dir = Path(model_dir)
        self.history_source = history_source
        self.scann_min_items = scann_min_items
        self._lock = threading.Lock()
        self._source_failing = False
        self._version = self._load_version(version)

    @classmethod
    def load(cls, model_dir: str | os.PathLike = DEFAULT_MODEL_DIR,
             version: int | None = None, **kwargs) -> "Recommender":
        return cls(model_dir, version, **kwargs)

    @property
    def version(self) -> int:
        return self._version.number

    # -- loading ------------------------------------------------------------------------
    def _load_version(self, version: int | None) -> _Version:
        available = versions(self.model_dir)
        if not available:
            raise FileNotFoundError(f"no exported version in {self.model_dir}; run "
                                    "`mmrec export --run RUN --model-dir ...` first")
        number = available[-1] if version is None else version
        if number not in available:
            raise FileNotFoundError(f"version {number} not in {self.model_dir} "
                                    f"(have {available})")
        path = self.model_dir / str(number)
        loaded = tf.saved_model.load(str(path))
        files = VersionFiles(path)
        side_car = files.items()
        manifest = files.manifest() if files.manifest_file.is_file() else {}  # format 1: none
        item_ids = loaded.item_ids.numpy().astype(str)
        user_ids = loaded.user_ids.numpy().astype(str).tolist()
        embeddings = loaded.item_embeddings.numpy()
        state = _Version(
            number=number, path=path, signatures=dict(loaded.signatures),
            item_ids=item_ids, item_index={item: i for i, item in enumerate(item_ids)},
            embeddings=embeddings, popularity=loaded.popularity.numpy(),
            seen_indptr=loaded.seen_indptr.numpy(), seen_items=loaded.seen_items.numpy(),
            user_index={user: row for row, user in enumerate(user_ids)},
            gates=np.load(files.gates_file),
            retired=(loaded.retired.numpy() if hasattr(loaded, "retired")
                     else np.zeros(len(item_ids), dtype=bool)),
            metadata=side_car["metadata"], history_length=side_car["history_length"],
            data_until=manifest.get("data_until"),
            index=self._build_index(embeddings), loaded=loaded,
            candidates=(int(manifest["ranker"]["candidates"])
                        if "rank_candidates" in loaded.signatures else 0))
        self._warm_up(state)
        return state

    @staticmethod
    def _warm_up(state: _Version) -> None:
        """Calls each signature the API uses once, so the first request does not
        pay for tracing and graph optimisation (as TF Serving's warm-up does)."""
        user = tf.constant([next(iter(state.user_index), "")])
        with quiet_native_noise():
            state.signatures["user_embedding"](user_id=user)
            state.signatures["user_embedding_with_history"](
                user_id=user, history=tf.constant([[""] * state.history_length]))
            if state.candidates:
                state.signatures["rank_candidates"](
                    user_id=user, history=tf.constant([[""]]),
                    candidate_ids=tf.constant([state.item_ids[:state.candidates].tolist()]))

    def _build_index(self, embeddings: np.ndarray):
        if len(embeddings) < self.scann_min_items:
            return None
        try:
            from mmrec.serve.scann_index import ScannIndex
            return ScannIndex(embeddings)
        except Exception as error:  # ScaNN missing or failing: exact search still works
            logger.warning("ScaNN index unavailable (%s); using brute force", error)
            return None

    def reload(self) -> bool:
        """Switches to the newest version if there is one; True if it switched.

        The new version is loaded completely before the switch, and calls in
        flight finish on the version they started with.
        """
        latest = versions(self.model_dir)
        if not latest or latest[-1] == self._version.number:
            return False
        state = self._load_version(latest[-1])
        with self._lock:
            self._version = state
        logger.info("now serving version %d", state.number)
        return True

    # -- recommending -------------------------------------------------------------------
    def recommend(self, user_id: str, k: int = 10, exclude_seen: bool = True,
                  history: Sequence[str] | None = None,
                  rerank: bool = True) -> list[Recommendation]:
        """The top ``k`` items for ``user_id``, each with its explanation.

        The user is scored on their clicks since the version was published
        (``history``, else the history source's) merged ahead of the history
        frozen in the version, as ``recommend_with_history`` does on TF
        Serving; the same items are left out, so both answer alike.

        Args:
          user_id: the user's id (a string; ints are accepted and converted).
          k: how many; clamped (with a warning) to the catalogue size.
          exclude_seen: leave out, for a known user, every item seen in the
            exported log, and, for any user, every item of the history given.
          history: the user's recent item ids, newest first, instead of the
            history source's.
          rerank: with a version that has a ranker, re-order the top
            max(N, k) retrieved items with it, as the SavedModel's
            ``serving_default`` does; False keeps retrieval's order (its
            ``retrieve`` signature). A version without a ranker retrieves only.
        """
        if isinstance(user_id, (int, np.integer)) and not isinstance(user_id, bool):
            user_id = str(user_id)
        if not isinstance(user_id, str):
            raise TypeError(f"user_id must be a string (or int), got {type(user_id).__name__}")
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        state = self._version  # one consistent version for this call
        if k > len(state.item_ids):
            warnings.warn(f"k={k} is larger than the catalogue ({len(state.item_ids)} items); "
                          f"returning at most {len(state.item_ids)}", stacklevel=2)
            k = len(state.item_ids)
        given = ([str(h) for h in history] if history is not None
                 else self._recent_items(user_id, state))
        if given:
            out = state.signatures["user_embedding_with_history"](
                user_id=tf.constant([user_id]), history=tf.constant([given]))
        else:
            out = state.signatures["user_embedding"](user_id=tf.constant([user_id]))
        history_ids = [h.decode() for h in out["history_item_ids"].numpy()[0]]
        attention = out["history_attention"].numpy()[0]
        personal = bool(out["known_user"].numpy()[0]) or any(history_ids)
        excluded: set[int] = set()
        if exclude_seen:
            excluded = {state.item_index[h] for h in given if h in state.item_index}
            row = state.user_index.get(user_id)
            if row is not None:
                excluded.update(state.seen_items[
                    state.seen_indptr[row]:state.seen_indptr[row + 1]].tolist())
        reranking = personal and rerank and state.candidates > 0
        depth = max(k, state.candidates) if reranking else k
        if personal:
            scores = self._scores(state, out["embedding"].numpy()[0], depth + len(excluded))
        else:
            scores = state.popularity.astype(np.float64).copy()
        if excluded:
            scores[list(excluded)] = -np.inf
        scores[state.retired] = -np.inf  # retired items are never recommended
        top = top_k(scores, depth)
        item_scores = scores[top]
        weights = np.broadcast_to(attention, (len(top), len(attention)))
        if reranking and len(top):
            ranked = state.signatures["rank_candidates"](
                user_id=tf.constant([user_id]), history=tf.constant([given or [""]]),
                candidate_ids=tf.constant([state.item_ids[top].tolist()]))
            item_scores = ranked["scores"].numpy()[0].astype(np.float64)
            weights = ranked["history_weights"].numpy()[0]
            order = np.lexsort((np.arange(len(top)), -item_scores))  # ties: retrieval order
            top, item_scores, weights = top[order], item_scores[order], weights[order]
        results = []
        for rank, item in enumerate(top[:k].tolist()):
            item_id = str(state.item_ids[item])
            because = tuple((h, self._title(state, h), float(w)) for h, w in sorted(
                ((h, w) for h, w in zip(history_ids, weights[rank]) if h),
                key=lambda pair: -pair[1])[:3])
            results.append(Recommendation(
                item_id=item_id, score=float(item_scores[rank]),
                title=self._title(state, item_id),
                metadata={key: values[item] for key, values in state.metadata.items()},
                explanation=Explanation(
                    because=because if personal else (),
                    text_gate=float(state.gates[item, 0]),
                    image_gate=float(state.gates[item, 1]),
                    fallback=None if personal else "popularity", reranked=reranking)))
        return results

    def _recent_items(self, user_id: str, state: _Version) -> list[str]:
        """The history source's items newer than the version's data (none without a
        source). A source that fails leaves the frozen history in place: the
        failure is logged once, when it starts, not raised on every call."""
        if self.history_source is None:
            return []
        try:
            items = self.history_source.recent_items(user_id, state.history_length,
                                                     since=state.data_until)
        except Exception as error:  # noqa: BLE001  (any source's failure: serve on)
            if not self._source_failing:
                logger.warning("history source %s failed (%s: %s); recommending from the "
                               "frozen history until it answers again",
                               type(self.history_source).__name__, type(error).__name__, error)
            self._source_failing = True
            return []
        if self._source_failing:
            logger.warning("history source %s answers again", type(self.history_source).__name__)
        self._source_failing = False
        return [str(item) for item in items]

    def _scores(self, state: _Version, user: np.ndarray, depth: int) -> np.ndarray:
        """Scores of every item; with an index, -inf outside its top ``depth``."""
        if state.index is not None:
            try:
                return state.index.scores(user, depth)
            except Exception as error:
                logger.warning("ScaNN search failed (%s); using brute force", error)
        return (state.embeddings @ user).astype(np.float64)

    @staticmethod
    def _title(state: _Version, item_id: str) -> str:
        titles = state.metadata.get("title")
        index = state.item_index.get(item_id)
        return titles[index] if titles and index is not None else item_id


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest finite scores, highest first, ties broken
    by the lower index (as ``tf.math.top_k`` does in the SavedModel)."""
    finite = np.flatnonzero(np.isfinite(scores))
    if len(finite) > k:
        threshold = np.partition(scores[finite], len(finite) - k)[len(finite) - k]
        finite = finite[scores[finite] >= threshold]  # every tie at the boundary
    return finite[np.lexsort((finite, -scores[finite]))][:k]


_default: Recommender | None = None
_default_lock = threading.Lock()


def recommend(user_id: str, k: int = 10, rerank: bool = True) -> list[Recommendation]:
    """Recommendations from ``$MMREC_MODEL_DIR`` (default ``./saved_models/mmrec``);
    ``rerank=False`` keeps retrieval's order when the version has a ranker."""
    global _default
    with _default_lock:
        model_dir = Path(os.environ.get("MMREC_MODEL_DIR", DEFAULT_MODEL_DIR))
        if _default is None or _default.model_dir != model_dir:
            _default = Recommender.load(model_dir)
    return _default.recommend(user_id, k=k, rerank=rerank)
