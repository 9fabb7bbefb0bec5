"""Training: preparing a run, fitting (XLA, resume, early stopping), run folders bound to their data."""
