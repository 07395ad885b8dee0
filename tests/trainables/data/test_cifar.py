import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch

from trainables.data.cifar import augment, load_cifar
from trainables.data.safe_pickle import safe_loads
from trainables.data.splits import DataError


def test_cifar10_shapes_dtypes_counts(syn_dir):
    ds = load_cifar(syn_dir, "cifar10")
    x = ds.splits["train"].x
    assert x.dtype == np.uint8 and x.shape[1:] == (3, 32, 32)
    assert len(ds.splits["train"]) + len(ds.splits["val"]) == 10 * 400
    assert np.bincount(ds.splits["test"].y).tolist() == [100] * 10
    assert ds.label_names[:2] == ["airplane", "automobile"] and ds.source == "synthetic"


def test_cifar100_fine_labels_and_coarse_names(syn_dir):
    ds = load_cifar(syn_dir, "cifar100")
    assert ds.num_classes == 100 and len(ds.meta["coarse_label_names"]) == 20
    assert np.bincount(ds.splits["test"].y).tolist() == [20] * 100


def test_batch_has_the_real_keys(syn_dir):
    with tarfile.open(syn_dir / "cifar-10-python.tar.gz") as tar:
        names = sorted(m.name for m in tar.getmembers())
        blob = tar.extractfile("cifar-10-batches-py/data_batch_1").read()
    assert names == sorted(["cifar-10-batches-py/batches.meta", "cifar-10-batches-py/test_batch"]
                           + [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)]
                           + ["cifar-10-batches-py/.metatune-synthetic"])  # a stand-in says so
    batch = safe_loads(blob, "batch")
    assert set(batch) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape[1] == 3072


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/metatune-pwned",))


def test_malicious_pickle_refused_and_not_run(tmp_path):
    if os.path.exists("/tmp/metatune-pwned"):
        os.remove("/tmp/metatune-pwned")
    payload = pickle.dumps({b"data": _Evil()}, protocol=2)
    with pytest.raises(DataError, match="forbidden"):
        safe_loads(payload, "evil")
    assert not os.path.exists("/tmp/metatune-pwned")


def test_malicious_batch_inside_archive_refused(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
            data = pickle.dumps(_Evil(), protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(DataError, match="refused to unpickle.*posix.system|refused"):
        load_cifar(tmp_path, "cifar10")


def test_missing_batch_named(syn_dir, tmp_path):
    with tarfile.open(syn_dir / "cifar-10-python.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    os.remove(tmp_path / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(DataError, match="data_batch_3"):
        load_cifar(tmp_path, "cifar10")


def test_truncated_archive(syn_dir, tmp_path):
    data = (syn_dir / "cifar-100-python.tar.gz").read_bytes()
    (tmp_path / "cifar-100-python.tar.gz").write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match="cifar-100-python"):
        load_cifar(tmp_path, "cifar100")


def test_augment_crops_and_flips_on_tensors():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32)
    gen = torch.Generator().manual_seed(0)
    out = augment(x, gen, pad=0)  # no padding: only the flips can change anything
    assert out.shape == x.shape
    for i in range(2):
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))
    padded = augment(x, torch.Generator().manual_seed(1))
    assert padded.shape == x.shape and not torch.equal(padded, x)
