"""Shared fixtures: offline switches, one synthetic data folder, one cache, one Ray cluster."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0",
                  TOKENIZERS_PARALLELISM="false", RAY_AUTH_MODE="token")
# The key that signs Tune's pickles: the session's own, not the user's (~/.config/metatune).
# A key named by METATUNE_SIGNING_KEY must exist (only the default one is made on first use).
if "METATUNE_SIGNING_KEY" not in os.environ:
    _key = os.path.join(__import__("tempfile").mkdtemp(prefix="mt-key-"), "signing.key")
    with os.fdopen(os.open(_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as _f:
        _f.write(__import__("secrets").token_hex(32))
    os.environ["METATUNE_SIGNING_KEY"] = _key

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

torch.set_num_threads(2)

# Small task options the tests share: a tiny BERT and a short source pretraining.
TEXT_OPTS = {"model": "tiny", "max_length": 64, "base_lr": 3e-3, "steps_per_unit": 5}
VISION_OPTS = {"source_steps": 150, "steps_per_unit": 5, "base_lr": 2e-3}


def flip_a_byte(path) -> None:
    """Damage a file the way a disk or a transfer does: one byte in its middle flipped."""
    from pathlib import Path

    blob = bytearray(Path(path).read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    Path(path).write_bytes(bytes(blob))


def settings_for(syn_dir, cache_dir, tasks=("newsgroups", "cifar_transfer"), units=4,
                 **options):
    """TrialSettings of the given tasks with the shared small options (``options`` on top)."""
    from trainables.tasks import trial_settings

    base = {"newsgroups": TEXT_OPTS, "cifar_transfer": VISION_OPTS}
    return trial_settings(list(tasks), str(syn_dir),
                          {t: {**base[t], **options.get(t, {})} for t in tasks},
                          max_units=units, cache_dir=cache_dir)


def task_for(name, syn_dir, cache_dir, meta=None, units=4, **options):
    """One built task (and its TrainConfig) under ``meta`` with the shared small options."""
    from trainables.config import MetaConfig
    from trainables.tasks import build_task

    settings = settings_for(syn_dir, cache_dir, (name,), units, **{name: options})
    return build_task(settings.tasks[0], meta or MetaConfig(), settings)


@pytest.fixture(scope="session")
def syn_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainables.data.synthetic import write_all

    out = tmp_path_factory.mktemp("synthetic")
    write_all(out, seed=0, size="small")
    return out


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("cache"))


def start_local_ray():
    """The test session's local Ray instance (token auth on), started on first use."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    return ray


@pytest.fixture
def ray_local():
    """A local Ray instance shared by the tests that need it (and by the CLI commands that
    join it). Multi-node tests shut it down to connect to their own cluster; the next user
    starts it again."""
    return start_local_ray()


@pytest.fixture(scope="module")
def env(cache_dir):
    return {**os.environ, "METATUNE_DASHBOARD": "0", "METATUNE_CACHE": cache_dir,
            "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def joined(env):
    """The env of a command that joins the test session's Ray (started here if it is not up)."""
    return {**env, "RAY_ADDRESS": start_local_ray().get_runtime_context().gcs_address}


@contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. "3m") mounted at ``where``, for a full disk (root only: the
    test is skipped, saying so, where it cannot mount)."""
    import subprocess

    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
