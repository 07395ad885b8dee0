import json

import pytest
import torch

from trainables.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def test_round_trip(tmp_path):
    tensors = {"w": torch.randn(3, 4), "step": torch.tensor(7)}
    save_checkpoint(tmp_path / "ck", tensors, {"units": 2, "lr": [1e-3]})
    back, state = load_checkpoint(tmp_path / "ck")
    assert torch.equal(back["w"], tensors["w"]) and state["units"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_tampered_tensor_file_refused(tmp_path):
    save_checkpoint(tmp_path / "ck", {"w": torch.zeros(100)}, {})
    f = tmp_path / "ck" / "tensors.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(tmp_path / "ck")


def test_truncated_and_tampered_state_refused(tmp_path):
    save_checkpoint(tmp_path / "ck", {"w": torch.zeros(100)}, {"units": 1})
    f = tmp_path / "ck" / "tensors.safetensors"
    f.write_bytes(f.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="truncated or was modified"):
        load_checkpoint(tmp_path / "ck")
    save_checkpoint(tmp_path / "ck2", {"w": torch.zeros(1)}, {"units": 1})
    s = tmp_path / "ck2" / "state.json"
    s.write_text(s.read_text().replace('"units": 1', '"units": 9'))
    with pytest.raises(CheckpointError, match="state.json: checksum mismatch"):
        load_checkpoint(tmp_path / "ck2")


def test_incomplete_folder_refused(tmp_path):
    save_checkpoint(tmp_path / "ck", {"w": torch.zeros(1)}, {})
    (tmp_path / "ck" / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="not a complete Metatune checkpoint"):
        load_checkpoint(tmp_path / "ck")


def test_failed_write_leaves_previous_checkpoint_intact(tmp_path):
    save_checkpoint(tmp_path / "ck", {"w": torch.ones(2)}, {"v": 1})

    class Boom:
        def detach(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_checkpoint(tmp_path / "ck", {"w": Boom()}, {"v": 2})  # type: ignore[dict-item]
    back, state = load_checkpoint(tmp_path / "ck")
    assert state["v"] == 1 and torch.equal(back["w"], torch.ones(2))
    assert json.loads((tmp_path / "ck" / "manifest.json").read_text())["format"]
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]


def test_listing_hashes_each_file_once_and_still_sees_damage(tmp_path, monkeypatch):
    """A VerifiedCache makes the second check a stat per file; a changed or cut file is hashed
    again (or refused by its size alone) and refused."""
    import time

    from tests.conftest import flip_a_byte
    from trainables import checkpoint
    from trainables.checkpoint import VerifiedCache, verify_checkpoint

    save_checkpoint(tmp_path / "ck", {"w": torch.randn(1000)}, {"units": 1})
    hashed = []
    real = checkpoint._sha256
    monkeypatch.setattr(checkpoint, "_sha256", lambda p: hashed.append(p.name) or real(p))
    cache_file = tmp_path / "verified.json"
    first = VerifiedCache(cache_file)
    verify_checkpoint(tmp_path / "ck", first)
    assert sorted(hashed) == ["state.json", "tensors.safetensors"]
    first.save()
    hashed.clear()
    verify_checkpoint(tmp_path / "ck", VerifiedCache(cache_file))  # a new process, same files
    assert hashed == []
    time.sleep(0.01)
    flip_a_byte(tmp_path / "ck" / "tensors.safetensors")  # same size, new mtime
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        verify_checkpoint(tmp_path / "ck", VerifiedCache(cache_file))
    assert hashed == ["tensors.safetensors"]
    hashed.clear()
    f = tmp_path / "ck" / "tensors.safetensors"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="bytes where .* were written"):
        verify_checkpoint(tmp_path / "ck", VerifiedCache(cache_file))
    assert hashed == []  # refused by its size alone
    with pytest.raises(CheckpointError):  # loading always hashes in full
        load_checkpoint(tmp_path / "ck")


def test_checkpoints_without_recorded_sizes_still_verify(tmp_path):
    save_checkpoint(tmp_path / "ck", {"w": torch.zeros(3)}, {})
    manifest = tmp_path / "ck" / "manifest.json"
    data = json.loads(manifest.read_text())
    del data["sizes"]
    manifest.write_text(json.dumps(data))
    load_checkpoint(tmp_path / "ck")
