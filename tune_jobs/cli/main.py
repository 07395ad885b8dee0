"""The ``metatune`` command line: parse, validate, hand over. No search logic lives here.

Exit codes: 0 success, 2 bad input (nothing was started), 1 a failed search or command, 130 / 143
a search stopped by Ctrl-C / SIGTERM (its state saved: `metatune resume` continues it).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from trainables.config import quiet_libraries
from trainables.data.splits import DataError
from tune_jobs.cli import commands, data
from tune_jobs.run.pipeline import BadInput, DiskFull, SearchFailed
from tune_jobs.run.stops import Interrupted

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it; SIGTERM gives 143


def _environment_defaults() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Every Ray cluster Metatune starts has token authentication on, and it connects with the
    # token. Ray reads this when it is imported, so it is set before anything imports ray.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    # transformers' load reports and datasets' bars (also in the workers of a local instance,
    # which inherit this environment); see trainables.trainable.quiet_libraries
    quiet_libraries()  # transformers may be imported already: its own switches then


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metatune",
        description="Search one hyperparameter configuration that is best across several "
                    "transfer-learning tasks, on Ray Tune with ASHA.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    data.add_parser(sub)
    commands.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    _environment_defaults()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the problem
        return EXIT_BAD_INPUT if exc.code else EXIT_OK
    try:
        if args.cmd == "data":
            return data.run(args)
        return commands.run(args)
    except (BadInput, DataError) as exc:
        print(f"metatune: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except DiskFull as exc:  # one line: where, and what to do
        print(f"metatune: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except SearchFailed as exc:
        traceback.print_exception(exc.__cause__ or exc, file=sys.stderr)
        print(f"metatune: the search failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Interrupted as exc:  # the search stopped in order on SIGINT / SIGTERM
        print(f"metatune: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("metatune: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `metatune … | head` closed the pipe: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
