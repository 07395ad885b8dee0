"""Issue 20: the bytes each trial moves to the head store in checkpoints, before (a checkpoint
every unit) and after (each ASHA rung, the last unit and every ``checkpoint_every`` units).

The smoke preset's checkpoint is measured (a real trial of its tiny models saved to disk); the
gpu preset's by arithmetic (bert-base: 110 M parameters in fp32 with AdamW's two moments, as
the trainable saves them). A trial's expected checkpoints under ASHA follow the same model as
the planned budget: a 1/reduction_factor share of the trials goes on past each rung.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from benchmarks.common import save, synthetic_data

BERT_BASE_PARAMS = 110e6
BYTES_PER_PARAM = 4 * 3  # fp32 weights + AdamW's exp_avg and exp_avg_sq


def expected(spec, units: list[int]) -> float:
    """The expected number of ``units`` a trial reaches under ASHA (a share 1/rf goes on past
    each rung)."""
    rungs = spec.asha.rungs()
    rf = spec.asha.reduction_factor
    return sum((1 / rf) ** sum(1 for r in rungs if r < u) for u in units)


def _smoke_checkpoint_bytes(tmp: Path) -> int:
    from trainables.config import MetaConfig
    from trainables.meta import MetaTrial
    from tune_jobs.spec import presets

    # A checkpoint's bytes depend on the models' shapes, not on how long the source was
    # pretrained: a few source steps instead of the preset's 400 (a minute on one core).
    data = synthetic_data(tmp / "data")
    spec = presets.build("smoke", overrides={"data": str(data), "cache_dir": str(tmp / "cache")},
                         sets=["task_options.cifar_transfer.source_steps=10"])
    spec = dataclasses.replace(spec, data_dir=str(data), data_kind="synthetic")
    trial = MetaTrial(MetaConfig(), spec.trial_settings(str(data)))
    trial.run_unit()
    out = tmp / "ckpt"
    trial.save(str(out))
    return sum(p.stat().st_size for p in out.rglob("*") if p.is_file())


def run(tmp: Path, quick: bool = False) -> dict:
    from tune_jobs.spec import presets

    sizes = {"smoke": _smoke_checkpoint_bytes(tmp),
             "gpu": int(BERT_BASE_PARAMS * BYTES_PER_PARAM)}
    out = {}
    for name, size in sizes.items():
        spec = presets.build("cpu" if name == "smoke" else name)  # the cpu preset's policy
        every = list(range(1, spec.asha.max_t + 1))
        now = spec.checkpoint_units()
        before, after = expected(spec, every), expected(spec, now)
        out[name] = {"checkpoint_mib": round(size / 2**20, 1),
                     "measured": name == "smoke",
                     "asha": dataclasses.asdict(spec.asha),
                     "checkpoint_every": spec.checkpoint_every,
                     "checkpoint_units": now,
                     "full_trial_checkpoints": {"before": len(every), "after": len(now)},
                     "expected_checkpoints_per_trial": {"before": round(before, 2),
                                                        "after": round(after, 2)},
                     "expected_mib_per_trial": {"before": round(before * size / 2**20, 1),
                                                "after": round(after * size / 2**20, 1)},
                     "ratio": round(after / before, 3)}
    return save("checkpoints", {"presets": out})


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp))
