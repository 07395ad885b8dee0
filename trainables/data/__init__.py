"""Data sets for Metatune's tasks: real loaders, synthetic stand-ins and on-disk caches."""

from __future__ import annotations

from typing import Any

__all__ = ["DataError", "Dataset", "Split"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: :mod:`splits` imports scikit-learn (seconds), and a process that
    # only reads the cache (:func:`trainables.data.cache.read_record`) should not pay for it.
    if name in __all__:
        from trainables.data import splits

        return getattr(splits, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
