"""Training: run folders, the XLA-compiled fit loop, resume and early stopping."""
