"""``metatune data …``: write synthetic stand-ins, check what is on disk, download real data."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trainables.data.archive import SYNTHETIC_MARKER
from trainables.data.locations import default_dir
from trainables.data.splits import DataError

DATASETS = ("newsgroups", "cifar10", "cifar100")


def add_parser(sub: Any) -> None:
    data = sub.add_parser("data", help="write, check or download data sets")
    dsub = data.add_subparsers(dest="data_cmd", required=True)
    syn = dsub.add_parser("synthetic", help="write stand-ins in the real on-disk formats")
    syn.add_argument("--out", default=None,
                     help="folder to write (default: $METATUNE_DATA/synthetic, as --data synthetic reads)")
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--size", choices=("small", "medium"), default="small")
    chk = dsub.add_parser("check", help="say which data sets are present, real or synthetic")
    chk.add_argument("--dir", default=None, help="default: $METATUNE_DATA/real")
    chk.add_argument("--config", default=None,
                     help="also check the tasks this spec file declares (custom_tasks, including "
                          "Hugging Face ones, and image tasks' declared sources)")
    dl = dsub.add_parser("download", help="download the real data sets (needs internet)")
    dl.add_argument("--dir", default=None,
                    help="default: $METATUNE_DATA/real (./data/real), where --data real reads")
    dl.add_argument("--only", choices=DATASETS, action="append")


def check(root: Path) -> list[dict[str, Any]]:
    """One row per data set: present, source, examples per split, or the error that stops it."""
    from trainables.data.cifar import load_cifar
    from trainables.data.newsgroups import load_newsgroups

    rows = []
    for name in DATASETS:
        row: dict[str, Any] = {"dataset": name}
        try:
            ds = load_newsgroups(root) if name == "newsgroups" else load_cifar(root, name)
        except DataError as exc:
            row.update(present=False, error=str(exc))
        else:
            row.update(present=True, source=ds.source, classes=ds.num_classes, path=ds.path,
                       layout=ds.meta.get("layout", ""),
                       **{s: len(split) for s, split in ds.splits.items()})
        rows.append(row)
    return rows


def check_declared(config: str, root: Path) -> list[dict[str, Any]]:
    """One row per task a spec file declares (custom and Hugging Face tasks) and per declared
    transfer source, loaded by the trials' own loaders."""
    from trainables.tasks import load_data, parse_task
    from tune_jobs.spec import presets
    from tune_jobs.spec.search_spec import task_labels

    spec = presets.load_file(config)
    rows = []
    for name, decl in (spec.get("custom_tasks") or {}).items():
        row: dict[str, Any] = {"dataset": name}
        try:
            task = parse_task(name, (spec.get("task_options") or {}).get(name), decl,
                              task_labels(name))
            target, source = load_data(task, str(root), 0, spec.get("cache_dir"))
        except (DataError, ValueError) as exc:
            row.update(present=False, error=str(exc))
        else:
            row.update(present=True, source=("hf" if task.hf else target.source),
                       classes=target.num_classes, path=target.path,
                       layout=(f"Hugging Face {task.hf.name}" if task.hf else "custom files")
                       + (f"; transfer source {source.name} ({source.source})" if source else ""),
                       **{s: len(split) for s, split in target.splits.items()})
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> int:
    if args.data_cmd == "synthetic":
        from trainables.data.synthetic import write_all

        out = Path(args.out) if args.out else default_dir("synthetic")
        paths = write_all(out, seed=args.seed, size=args.size)
        for name, path in paths.items():
            print(f"wrote {name:<11} {path}")
        print(f"marked {out / SYNTHETIC_MARKER} (synthetic, seed={args.seed}, size={args.size})")
        return 0
    if args.data_cmd == "check":
        root = Path(args.dir) if args.dir else default_dir("real")
        rows = check(root) + (check_declared(args.config, root) if args.config else [])
        print(f"data folder: {root}")
        for r in rows:
            if r["present"]:
                print(f"  {r['dataset']:<11} present  {r['source']:<9} {r['classes']:>3} classes  "
                      f"train={r['train']} val={r['val']} test={r['test']}  ({r['layout']})")
            else:
                print(f"  {r['dataset']:<11} MISSING  {r['error']}")
        return 0 if all(r["present"] for r in rows) else 1
    if args.data_cmd == "download":
        from trainables.data.cifar import download_cifar
        from trainables.data.newsgroups import download_newsgroups

        root = Path(args.dir) if args.dir else default_dir("real")
        for name in args.only or DATASETS:
            path = download_newsgroups(root) if name == "newsgroups" else download_cifar(root, name)
            print(f"{name:<11} {path}")
        return 0
    raise AssertionError(args.data_cmd)
