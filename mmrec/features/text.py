"""Item text to token ids with tensorflow_text WordPiece.

Tokenisation turns strings into integers, which XLA cannot do, so it runs
once per catalogue when item features are prepared (and, later, inside the
serving signature for new items), never inside the compiled training step.
The vocabulary is learned from the catalogue's own text with
tensorflow_text's WordPiece learner, or read from a supplied vocab file (one
token per line, ``[PAD]`` first and ``[UNK]`` second).

Example:

    vocab = learn_vocabulary(["Toy Story 1995 Animation"], vocab_size=500)
    tokenizer = TextTokenizer(vocab, max_tokens=16)
    tokenizer(["toy story"])   # int32 [1, 16], zero-padded
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

PAD, UNK = "[PAD]", "[UNK]"
RESERVED_TOKENS = (PAD, UNK)


def learn_vocabulary(texts: Sequence[str], vocab_size: int = 4000) -> list[str]:
    """Learns a WordPiece vocabulary (case-folded) from ``texts``.

    The first two tokens are ``[PAD]`` (id 0) and ``[UNK]`` (id 1).
    """
    from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset as learner

    corpus = tf.data.Dataset.from_tensor_slices(
        tf.constant([t for t in texts if t] or [""], dtype=tf.string)).batch(1024)
    # lower_thresh=2: a word seen at least twice may become a token of its own
    # (the learner's default of 10 leaves a small catalogue with characters).
    vocab = learner.bert_vocab_from_dataset(
        corpus, vocab_size=vocab_size, reserved_tokens=list(RESERVED_TOKENS),
        bert_tokenizer_params={"lower_case": True}, learn_params={"lower_thresh": 2})
    return list(vocab)


def read_vocabulary(path: str | os.PathLike) -> list[str]:
    """Reads a vocab file, one token per line; checks the reserved tokens."""
    tokens = [line.rstrip("\n") for line in Path(path).read_text(encoding="utf-8").splitlines()]
    if tokens[:2] != list(RESERVED_TOKENS):
        raise ValueError(f"{path}: a vocab file must start with {PAD} and {UNK} on lines 1-2, "
                         f"found {tokens[:2]}")
    if len(set(tokens)) != len(tokens):
        raise ValueError(f"{path}: vocab file has duplicate tokens")
    return tokens


def write_vocabulary(tokens: Sequence[str], path: str | os.PathLike) -> None:
    Path(path).write_text("\n".join(tokens) + "\n", encoding="utf-8")


class TextTokenizer(tf.Module):
    """Case-folds and WordPiece-tokenises strings to fixed-length int32 ids.

    The ids are padded with 0 (``[PAD]``) and truncated to ``max_tokens``; a
    word outside the vocabulary becomes ``[UNK]`` (1). Being a ``tf.Module``
    built from tensorflow_text's FastWordpieceTokenizer, it can be saved in a
    SavedModel that stock TF Serving loads.

    Args:
      vocabulary: tokens, ``[PAD]`` and ``[UNK]`` first.
      max_tokens: length of the output rows.
    """

    def __init__(self, vocabulary: Sequence[str], max_tokens: int = 32) -> None:
        super().__init__(name="text_tokenizer")
        if list(vocabulary[:2]) != list(RESERVED_TOKENS):
            raise ValueError(f"vocabulary must start with {RESERVED_TOKENS}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        self.vocabulary = list(vocabulary)
        self.max_tokens = max_tokens
        self._wordpiece = tf_text.FastWordpieceTokenizer(
            vocab=self.vocabulary, suffix_indicator="##", unknown_token=UNK,
            token_out_type=tf.int32, no_pretokenization=False)

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    def __call__(self, texts) -> tf.Tensor:
        """int32 [B, max_tokens] ids for a string tensor or list of B texts."""
        folded = tf_text.case_fold_utf8(tf.convert_to_tensor(texts, dtype=tf.string))
        ragged = self._wordpiece.tokenize(folded)
        ragged = ragged[:, :self.max_tokens]
        return ragged.to_tensor(default_value=0, shape=[None, self.max_tokens])

    def token_ids(self, texts: Sequence[str], batch_size: int = 4096) -> np.ndarray:
        """int32 [N, max_tokens] ids of any number of texts, as NumPy, tokenised
        ``batch_size`` at a time: the rows are fixed-width, so the batch size
        bounds memory and changes no id."""
        ids = np.zeros((len(texts), self.max_tokens), dtype=np.int32)
        for start in range(0, len(texts), batch_size):
            ids[start:start + batch_size] = self(texts[start:start + batch_size]).numpy()
        return ids
