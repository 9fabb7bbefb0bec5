"""feedback: the click store and periodic fine-tuning jobs for mmrec models.

This package builds on ``mmrec`` (never the other way round). ``feedback.store``
keeps user events durably, validated and exactly once, on SQLite or
PostgreSQL, for serving (``Recommender(history_source=store)``) and training
to read; it loads no TensorFlow. ``mmrec feedback ...`` commands come from
``feedback.cli`` through mmrec's plugin entry point. Importing this package
selects Keras 2 for TensorFlow, like ``import mmrec``, for the jobs that train.
"""

from mmrec._tf_env import use_legacy_keras

use_legacy_keras()
