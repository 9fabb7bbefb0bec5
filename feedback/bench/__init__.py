"""Benchmarks of the feedback package (``mmrec bench feedback-store``)."""
