"""Data sets for lab: import, cache, verify, load and split.

Everything else in lab reads data through these names; the modules behind them own one concern
each (store: the cache, cifar/folder/digits: formats, download: fetching, split: index splits).
"""

from __future__ import annotations

from lab.data.catalog import import_data, load_dataset
from lab.data.cifar import CIFAR10_CLASSES, CIFAR10_MD5
from lab.data.download import CIFAR10_URL, fetch_cifar10
from lab.data.split import Split, make_split
from lab.data.store import Dataset, default_data_dir, list_datasets, verify_dataset

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "Dataset",
    "Split",
    "default_data_dir",
    "fetch_cifar10",
    "import_data",
    "list_datasets",
    "load_dataset",
    "make_split",
    "verify_dataset",
]
