"""Data: catalogues, click logs, readers, generators and splits.

Nothing here imports TensorFlow: loading and describing data is plain NumPy.
"""

from mmrec.data.catalogue import Catalogue
from mmrec.data.dataset import Dataset
from mmrec.data.interactions import Interactions
from mmrec.data.problems import DataError, LoadReport
from mmrec.data.registry import load_dataset

__all__ = ["Catalogue", "DataError", "Dataset", "Interactions", "LoadReport", "load_dataset"]
