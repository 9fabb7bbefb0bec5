"""feedback: click ingestion and periodic fine-tuning jobs for mmrec models.

This package builds on ``mmrec`` (never the other way round). Importing it
selects Keras 2 for TensorFlow, like ``import mmrec``. Its ingestion store and
fine-tuning jobs arrive with the feedback-loop work; for now it only fixes the
import order that every job will rely on.
"""

from mmrec._tf_env import use_legacy_keras

use_legacy_keras()
