"""The Ray Tune adapter: the only module of ``trainables`` that imports Ray.

It turns the trial's config dict into a :class:`MetaConfig`, gives the trial the CPU threads
and device it was allotted, restores from Tune's checkpoint, and reports one result per budget
unit. Everything else lives in pure modules.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from trainables.baseline import Baseline
from trainables.checkpoint import CheckpointError, DiskFull, take_failed_writes
from trainables.config import MetaConfig, TaskSpec, TrialSettings, quiet_libraries
from trainables.data import cache
from trainables.meta import MetaTrial, TaskRunner, assemble, read_trial, write_trial


def _allotted() -> tuple[int, str]:
    """CPU threads and device this trial was given by Ray (not the whole machine's)."""
    try:
        resources = ray.get_runtime_context().get_assigned_resources()
    except Exception:  # outside a Ray worker (direct call in a test)
        resources = {}
    cpus = max(1, int(round(resources.get("CPU", 1))))
    gpu = resources.get("GPU", 0) > 0 and torch.cuda.is_available()
    return cpus, "cuda" if gpu else "cpu"


def prepare_process(settings: TrialSettings) -> str:
    """Give this process the threads Ray allotted it (and quiet libraries); the device it
    should train on."""
    quiet_libraries()
    threads, device = _allotted()
    torch.set_num_threads(threads)
    if settings.device == "cuda" and device != "cuda":
        raise ValueError("device='cuda' is invalid here: this process was allotted no visible "
                         "GPU (check resources.gpu and that the node has CUDA)")
    return "cpu" if settings.device == "cpu" else device


def _node_cpus() -> int:
    """The CPUs Ray gives the node this process runs on (1 outside a Ray worker)."""
    try:
        here = ray.get_runtime_context().get_node_id()
        node = next(n for n in ray.nodes() if n["NodeID"] == here)
        return max(1, int(node["Resources"].get("CPU", 1)))
    except Exception:
        return 1


def _node_id() -> str:
    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:
        return "local"


@ray.remote
class TaskActor:
    """One task of a trial in its own placement-group bundle (the scale-out form)."""

    def __init__(self, spec: TaskSpec, meta: MetaConfig, settings: TrialSettings) -> None:
        from trainables.loop import seed_everything

        device = prepare_process(settings)
        seed_everything(meta.seed)
        self.runner = TaskRunner(spec, meta, settings, device)

    def run_unit(self) -> dict[str, float]:
        return self.runner.run_unit()

    def state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.runner.state()

    def load(self, tensors: dict[str, Any], state: dict[str, Any]) -> None:
        self.runner.load(tensors, state)


class ParallelMetaTrial:
    """The tasks of one trial as actors, one per bundle of the trial's placement group (bundle 0
    is the trial itself), running each unit side by side and still synchronised per unit."""

    def __init__(self, meta: MetaConfig, settings: TrialSettings,
                 task_resources: list[dict[str, float]]) -> None:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        self.meta, self.settings, self.units = meta, settings, 0
        group = ray.util.get_current_placement_group()
        self.actors = {}
        for i, spec in enumerate(settings.tasks):
            res = task_resources[i]
            self.actors[spec.name] = TaskActor.options(
                num_cpus=res.get("CPU", 1), num_gpus=res.get("GPU", 0),
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    group, placement_group_bundle_index=i + 1),
            ).remote(spec, meta, settings)

    def run_unit(self) -> dict[str, Any]:
        results = ray.get([a.run_unit.remote() for a in self.actors.values()])
        self.units += 1
        return assemble(results, list(self.actors), self.settings.aggregate, self.units)

    def save(self, folder: str) -> None:
        states = dict(zip(self.actors, ray.get([a.state.remote() for a in self.actors.values()]),
                          strict=True))
        write_trial(folder, states, self.units, self.meta, self.settings)

    def restore(self, folder: str) -> None:
        self.units, states = read_trial(folder, self.meta, list(self.actors))
        ray.get([self.actors[n].load.remote(*states[n]) for n in self.actors])


def restore(trial: Any, checkpoint: tune.Checkpoint) -> None:
    """Continue from Tune's checkpoint; if it is damaged, from the newest intact one before it.

    Falling back is said aloud (the trial's log names both checkpoints and the unit it goes on
    from); with none intact, the trial starts over.
    """
    import pyarrow.fs as pafs

    try:
        with checkpoint.as_directory() as folder:
            trial.restore(folder)
        return
    except CheckpointError as exc:
        damaged = exc
    fs, path = checkpoint.filesystem, checkpoint.path.rstrip("/")
    parent, name = path.rsplit("/", 1)
    older = sorted((info.path for info in fs.get_file_info(pafs.FileSelector(parent))
                    if info.type == pafs.FileType.Directory
                    and info.base_name.startswith("checkpoint_") and info.base_name < name),
                   reverse=True)
    for other in older:
        try:
            with tune.Checkpoint(other, filesystem=fs).as_directory() as folder:
                trial.restore(folder)
        except CheckpointError:
            continue
        print(f"warning: checkpoint {path} is damaged ({damaged}); going on from the previous "
              f"intact checkpoint {other} at unit {trial.units}", file=sys.stderr, flush=True)
        return
    # Nothing intact to go on from (the first checkpoint was cut short by a full disk, say):
    # the trial starts over; its units are trained again and reported again.
    print(f"warning: checkpoint {path} is damaged ({damaged}) and no earlier one is intact; "
          "the trial starts over from unit 0", file=sys.stderr, flush=True)


def meta_trainable(config: dict[str, Any], settings: TrialSettings,
                   task_resources: list[dict[str, float]] | None = None) -> None:
    """One trial: every task of ``settings.tasks`` advances one unit per report.

    With ``task_resources`` (one resource dict per task) the tasks run as actors in the trial's
    placement group, side by side; without, one after another in this process.
    """
    started = time.perf_counter()
    meta = MetaConfig.from_dict(config)
    device = prepare_process(settings)
    if task_resources:
        trial: Any = ParallelMetaTrial(meta, settings, task_resources)
    else:
        trial = MetaTrial(meta, settings, device=device)
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        restore(trial, checkpoint)
    node_id = _node_id()
    # Where a trial's time goes (benchmarks/ and the report add these up): building the trial
    # (and restoring it) once per attempt, writing checkpoints, and Tune's handling of the
    # previous report (persisting its checkpoint to storage), next to each task's train_s/eval_s.
    timing = {"time/setup_s": time.perf_counter() - started, "time/save_s": 0.0,
              "time/report_s": 0.0}
    while trial.units < settings.max_units:
        report = {**trial.run_unit(), "node_id": node_id, **timing}  # node: where it ran
        report["time/end"] = time.time()  # when the unit ended: the order `simulate` replays
        timing = {"time/setup_s": 0.0, "time/save_s": 0.0, "time/report_s": 0.0}
        begun = time.perf_counter()
        if checkpoints_at(trial.units, settings):
            with tempfile.TemporaryDirectory() as tmp:
                trial.save(tmp)
                report["time/save_s"] = time.perf_counter() - begun
                begun = time.perf_counter()
                _report_checkpoint(report, tmp)
        else:
            tune.report(report)
        timing["time/report_s"] = time.perf_counter() - begun


def checkpoints_at(units: int, settings: TrialSettings) -> bool:
    """Whether a trial saves a checkpoint after ``units``: at each ASHA rung (where it may
    stop, and that result is the one kept), at its last unit, and every
    ``checkpoint_every`` units in between (what a crash can cost)."""
    return (units % settings.checkpoint_every == 0 or units in settings.checkpoint_at
            or units == settings.max_units)


def _report_checkpoint(report: dict[str, Any], folder: str) -> None:
    """``tune.report`` with the checkpoint in ``folder``; a write that failed on the way (a full
    disk: one line naming where, :class:`DiskFull`) fails the trial instead of passing."""
    try:
        tune.report(report, checkpoint=tune.Checkpoint.from_directory(folder))
        failed = take_failed_writes()  # what pyarrow did not raise
        if failed:
            raise failed[0]
    except OSError as exc:
        if (full := DiskFull.of(exc, folder)) is None:
            raise
        raise full from None


def prepare_shared(spec: TaskSpec, settings: TrialSettings) -> dict[str, Any]:
    """Build one task the way a trial does, so that every shared item it needs is in the cache:
    the decoded data, the tokenizer and token arrays, the pretrained source model, and the
    task's classical baseline (:mod:`trainables.baseline`). Run as a Ray
    task before the trials (:func:`prepare`); the trials then only read the cache."""
    from ray.experimental.tqdm_ray import tqdm

    from trainables.tasks import build_task, load_data, task_baseline

    started = time.perf_counter()
    device = prepare_process(settings)
    # No trial runs yet: the build (the source pretraining above all) takes every CPU of its
    # node, not only the trial-sized share it was scheduled with.
    torch.set_num_threads(max(torch.get_num_threads(), _node_cpus()))
    # Ray's own distributed tqdm: the driver draws one bar per task, by stage
    bar = tqdm(total=3, desc=f"[metatune] preparing {spec.name}: data", unit="stage",
               flush_interval_s=0.5)
    load_data(spec, settings.data_dir, settings.split_seed, settings.cache_dir)
    bar.set_description(f"[metatune] preparing {spec.name}: model"
                        + (" and source" if spec.kind == "image" else ""))
    bar.update(1)
    task, _ = build_task(spec, MetaConfig(), settings, device)
    params = sum(p.numel() * p.element_size() for p in task.learner.model.parameters())
    bar.set_description(f"[metatune] preparing {spec.name}: classical baseline")
    bar.update(1)
    baseline = task_baseline(spec, settings)
    bar.set_description(f"[metatune] prepared {spec.name}")
    bar.update(1)
    bar.close()
    # a checkpoint at most: every weight trained, with Adam's two moments
    record = {"task": spec.name, "device": device, "baseline": baseline.to_dict(),
              "checkpoint_bytes": 3 * params}
    try:
        cache.write_record(PREPARED, prepared_key(spec, settings), record, cache.opened(),
                           settings.cache_dir)
    except OSError as exc:  # a read-only shared cache, say: the next search prepares again
        print(f"[metatune] warning: {spec.name}'s preparation was not recorded in the cache "
              f"({exc}); the next search prepares it again", file=sys.stderr)
    return {**record, "baseline": baseline, "seconds": time.perf_counter() - started,
            "node_id": _node_id()}


PREPARED = "prepared"  # the cache's namespace of preparation records
PREPARED_FORMAT = 1  # part of each record's key: raise it when a record's meaning changes
LIBRARIES = ("torch", "transformers", "scikit-learn", "safetensors", "numpy", "datasets")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """A hash of this package's source and of the versions of the libraries that build the
    cached items: a record written by other code (an upgrade, a new cache entry version) is
    never read as this code's."""
    from importlib import metadata

    h = hashlib.sha256()
    root = Path(__file__).parent
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    for name in LIBRARIES:
        try:
            h.update(f"{name}=={metadata.version(name)}".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{name} absent".encode())
    return h.hexdigest()[:16]


def prepared_key(spec: TaskSpec, settings: TrialSettings) -> str:
    """The key of a task's preparation: the task, the trials' settings (this task alone) and
    the content of its data and source (so that data replaced in place is prepared again)."""
    from trainables.tasks import load_data

    target, source = load_data(spec, settings.data_dir, settings.split_seed, settings.cache_dir)
    return cache.key_of({"format": PREPARED_FORMAT, "code": code_version(),
                         "spec": dataclasses.asdict(spec),
                         "settings": dataclasses.asdict(dataclasses.replace(settings,
                                                                            tasks=(spec,))),
                         "data": target.fingerprint(),
                         "source": None if source is None else source.fingerprint()})


def prepared_before(settings: TrialSettings, here: bool = False) -> list[dict[str, Any] | None]:
    """Each task's result of an earlier preparation with the same inputs (None for a task
    that must be prepared), read from the cache that the cluster's workers use: by this
    process where ``here`` (a local instance: its workers share this machine's cache), else by
    a Ray task that imports neither torch nor the models (a second or so). A record counts
    only while every cache entry its preparation built or read is still there. For a cluster
    of one node: on more, where the trials run decides which node's cache they read. Whatever
    goes wrong here (a record it cannot read, the task failing) means: prepare as before."""
    try:
        keys = [prepared_key(spec, settings) for spec in settings.tasks]
        if here:
            found = cache.read_records(PREPARED, keys, settings.cache_dir)
        else:
            read = ray.remote(cache.read_records).options(num_cpus=0, max_retries=0)
            found = ray.get(read.remote(PREPARED, keys, settings.cache_dir), timeout=60)
        return [None if r is None else {**r, "baseline": Baseline.from_dict(r["baseline"])}
                for r in found]
    except Exception as exc:  # noqa: BLE001 (the preparation itself then says what is wrong)
        print(f"warning: earlier preparations could not be read from the cache ({exc}); "
              "preparing the tasks", file=sys.stderr)
        return [None] * len(settings.tasks)


def ray_options(resources: dict[str, float]) -> dict[str, Any]:
    """A Ray resource dict ({"CPU": 2, "GPU": 0.5, "custom": 1}) as a task's ``.options``."""
    extra = {k: v for k, v in resources.items() if k not in ("CPU", "GPU")}
    return {"num_cpus": resources.get("CPU", 1), "num_gpus": resources.get("GPU", 0),
            "resources": extra or None}


def prepare(settings: TrialSettings, resources: list[dict[str, float]]) -> Any:
    """Prepare every task at once, each as a Ray task with ``resources`` (its trial's, or its
    own bundle's: a GPU where the trials have one). Yields each task's result as it finishes;
    a task's own exception (a DataError naming the file) is raised as it is."""
    remote = ray.remote(prepare_shared)
    pending = {}
    for spec, res in zip(settings.tasks, resources, strict=True):
        ref = remote.options(**ray_options(res), max_retries=0).remote(spec, settings)
        pending[ref] = spec.name
    while pending:
        (ready,), _ = ray.wait(list(pending), num_returns=1)
        pending.pop(ready)
        try:
            yield ray.get(ready)
        except ray.exceptions.RayTaskError as exc:
            raise exc.cause from None


def trainable_for(settings: TrialSettings, resources: dict[str, float] | None = None,
                  task_resources: list[dict[str, float]] | None = None) -> Any:
    """The Tune trainable bound to ``settings`` (through the object store), with resources.

    ``task_resources`` selects the scale-out form: a placement group with a small bundle for the
    trial and one bundle per task (e.g. a GPU for BERT, CPUs for the CNN).
    """
    if task_resources:
        bundles = [{"CPU": 0.01}] + [dict(r) for r in task_resources]
        fn = tune.with_parameters(meta_trainable, settings=settings,
                                  task_resources=task_resources)
        return tune.with_resources(fn, tune.PlacementGroupFactory(bundles, strategy="PACK"))
    fn = tune.with_parameters(meta_trainable, settings=settings)
    return tune.with_resources(fn, resources) if resources else fn
