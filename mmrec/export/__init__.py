"""Publishing: versioned, self-contained SavedModels in the layout TF Serving polls.

``layout`` (what a version holds; no TensorFlow, shared with serving),
``serving_tables`` and ``serving_module`` (what a version serves), ``publish``
(the one atomic way a model becomes a version, and loading a version to change
it), ``exporter`` (a trained run folder to a version).
"""
