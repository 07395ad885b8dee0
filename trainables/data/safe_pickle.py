"""A restricted unpickler for the official CIFAR python archives.

The archives are Python pickles. Unpickling can run arbitrary code, so only what a CIFAR batch
holds is allowed out: numpy arrays and dtypes, plus the builtin containers and scalars that the
pickle protocol makes without any lookup.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

from trainables.data.splits import DataError

# (module, name) pairs a CIFAR batch needs to rebuild its numpy arrays, under numpy 1 and 2.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    # Protocol 2 pickles written by Python 3 store bytes as _codecs.encode(str, "latin1").
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            if module == "_codecs":
                import codecs

                return codecs.encode
            if name == "_reconstruct":
                return _reconstruct()
            return getattr(np, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is forbidden in a data file")


def _reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct as fn  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct as fn
    return fn


def safe_loads(data: bytes, where: str) -> Any:
    """Unpickle ``data`` allowing nothing but plain arrays, lists, dicts, numbers and strings."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise DataError(f"{where}: refused to unpickle: {exc}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DataError(f"{where}: not a readable pickle ({exc}); the file may be truncated") from None
