"""Where Tune writes an experiment: the filesystem (local, URI or head store) behind the
signing layer, and the signature check before Tune may load an existing experiment's pickles.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from tune_jobs.spec.search_spec import SearchSpec
from tune_jobs.store.uri import is_uri


class Storage(NamedTuple):
    """Where Tune writes: a filesystem, the storage path in it, and whether it is the head store."""

    fs: Any
    path: str
    head_store: bool = False

    def experiment(self, name: str) -> str:
        return f"{self.path.rstrip('/')}/{name}"


def storage_filesystem(spec: SearchSpec, connected: bool) -> Storage:
    """Tune's storage: the head store when this search needs it, else the folder or URI itself —
    always behind the layer that signs Tune's pickles (:mod:`tune_jobs.store.signing`)."""
    import pyarrow.fs as pafs

    from tune_jobs.store import signing

    assert spec.storage is not None
    mode = spec.head_store
    if is_uri(spec.storage):
        inner, path = pafs.FileSystem.from_uri(spec.storage)
        return Storage(signing.signing(inner), path)
    if mode is False or (mode == "auto" and not connected):
        return Storage(signing.signing(pafs.LocalFileSystem()), spec.storage)
    from tune_jobs.store import head_store

    if not head_store.on_head_node():
        raise ValueError(
            "the head store keeps results on the head node's disk, so the search's driver must "
            "run there: submit it with scripts/submit.sh (ray job submit), run `metatune run` on "
            "the head node, or pass a shared --storage (s3://…, or NFS with --set head_store=false)")
    return Storage(signing.signing(head_store.start(spec.storage)), spec.storage, head_store=True)


def check_signatures(spec: SearchSpec, storage: Storage, trust: bool = False) -> None:
    """Before Tune loads an existing experiment's pickles: each must carry a valid signature.

    ``trust`` (``--trust-unsigned``, the user's explicit word) signs the files as they are.
    """
    from ray import tune

    from tune_jobs.store import signing

    exp, fs = storage.experiment(spec.experiment), storage.fs
    if not tune.Tuner.can_restore(exp, storage_filesystem=fs):
        return
    try:
        signing.verify(fs, exp)
    except signing.UnsignedState as exc:
        if not trust:
            raise ValueError(
                f"refusing to resume {spec.experiment}: {exc} (checked with the key "
                f"{signing.key_path()}). Ray Tune's state files are pickles that run code when "
                "loaded, and nothing was loaded. If the folder was signed with another key, "
                "set METATUNE_SIGNING_KEY to that key file. --trust-unsigned signs every state "
                "file as it is now, a changed one too: pass it only for a folder that no one "
                "else can write to"
            ) from None
        signing.sign_existing(fs, exp)
