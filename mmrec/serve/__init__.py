"""Serving in Python: load an exported version and recommend with explanations."""

from mmrec.serve.recommender import Explanation, Recommendation, Recommender, recommend

__all__ = ["Explanation", "Recommendation", "Recommender", "recommend"]
