"""Data sets for Metatune's tasks: real loaders, synthetic stand-ins and on-disk caches."""

from trainables.data.splits import DataError, Dataset, Split

__all__ = ["DataError", "Dataset", "Split"]
