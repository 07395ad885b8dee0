"""Progress bars for the driver's own phases (the final evaluation), with tqdm on stderr;
Ray-free, so that importing it starts nothing. (The preparation's bars are drawn from inside
its Ray tasks, by Ray's tqdm_ray: trainables.trainable.prepare_shared.)"""

from __future__ import annotations

import sys
from typing import Any


def progress_bar(total: int, what: str, unit: str) -> Any:
    """A tqdm bar: ``[metatune] what: n/total units |███| elapsed``."""
    from tqdm import tqdm

    return tqdm(total=total, desc=f"[metatune] {what}", unit=unit, leave=True, file=sys.stderr,
                dynamic_ncols=True,
                bar_format="{desc}: {n_fmt}/{total_fmt} " + unit + "s |{bar:20}| {elapsed}")
