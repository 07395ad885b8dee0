"""The benchmark suite: each measurement next to its baseline in the same process, numbers to
stdout and to benchmarks/results/<name>.json, then benchmarks/BENCHMARKS.md generated from them.

    make bench          # everything (about 40 min on 2 cores)
    make bench-quick    # the performance figures, smaller (≤ 5 min on 2 cores), into
                        # benchmarks/results/quick/ (the full run's figures stay as they are)
    make bench-gpu      # the GPU figures; skipped where there is no CUDA device
    python -m benchmarks.run_all --only overhead,throughput

These are benchmarks, not tests: nothing here fails a build on a number.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common  # noqa: F401  (the offline environment, before anything imports)

ALL = ["throughput", "shared_work", "overhead", "search_efficiency", "head_store_scale",
       "heldout_text", "asha_vs_full", "warm_start", "aggregate", "sources", "simulated",
       "checkpoints", "early_final_eval"]
# issue 20's figures, smaller (overhead and simulated, the other fast ones, run in `make bench`)
QUICK = ["throughput", "search_efficiency", "head_store_scale", "checkpoints"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick subset, smaller")
    parser.add_argument("--only", help=f"comma-separated, from {ALL + ['gpu']}")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else (QUICK if args.quick else ALL)
    unknown = sorted(set(names) - set(ALL) - {"gpu"})
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {ALL + ['gpu']}")
    if args.quick:
        common.OUT = common.QUICK_OUT
    failed = []
    with tempfile.TemporaryDirectory(prefix="bench-data-") as shared:
        common.SHARED["root"] = Path(shared)
        for name in names:
            started = time.perf_counter()
            print(f"== {name}", flush=True)
            module = importlib.import_module(f"benchmarks.{name}")
            with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
                try:
                    module.run(Path(tmp), quick=args.quick)
                except Exception as exc:  # report it and go on: one broken figure is not all
                    import traceback

                    traceback.print_exc()
                    failed.append(f"{name}: {type(exc).__name__}: {exc}")
            print(f"== {name}: {time.perf_counter() - started:.0f} s", flush=True)
    from benchmarks.report import DOC, write

    print(f"wrote {write(common.OUT / 'BENCHMARKS.md' if args.quick else DOC)}")
    for line in failed:
        print(f"benchmark failed: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
