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
