import json

import numpy as np
import pytest
from PIL import Image

from trainables.data.custom import load_image_task, load_text_task
from trainables.data.splits import DataError


def _rows(n=40):
    return [(f"text number {i} about {'cats' if i % 2 else 'dogs'}", "cat" if i % 2 else "dog")
            for i in range(n)]


def test_csv_and_jsonl(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("text,label\n" + "\n".join(f'"{t}",{lab}' for t, lab in _rows()))
    jl = tmp_path / "t.jsonl"
    jl.write_text("\n".join(json.dumps({"text": t, "label": lab}) for t, lab in _rows()))
    for path in (csv, jl):
        ds = load_text_task("mine", path)
        assert ds.label_names == ["cat", "dog"] and ds.source == "custom"
        assert sum(len(s) for s in ds.splits.values()) == 40
        assert set(np.bincount(ds.splits["test"].y)) == {2}  # stratified


def test_text_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("body,label\nx,1\n")
    with pytest.raises(DataError, match=r"bad.csv: missing column\(s\) \['text'\]"):
        load_text_task("x", bad)
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(json.dumps({"text": t, "label": lab}) for t, lab in _rows()))
    test = tmp_path / "test.jsonl"
    test.write_text(json.dumps({"text": "x", "label": "bird"}))
    with pytest.raises(DataError, match=r"unknown label\(s\) \['bird'\]"):
        load_text_task("x", train, test)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "a", "label": "b"}\n{oops\n')
    with pytest.raises(DataError, match="broken.jsonl:2: invalid JSON"):
        load_text_task("x", broken)


def test_image_folder_and_npz(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(20):
            arr = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / "imgs" / cls / f"{i}.png")
    ds = load_image_task("pics", tmp_path / "imgs")
    assert ds.splits["train"].x.shape[1:] == (3, 32, 32) and ds.label_names == ["a", "b"]
    np.savez(tmp_path / "d.npz", x=rng.random((30, 32, 32, 3)), y=np.arange(30) % 3)
    ds = load_image_task("arr", tmp_path / "d.npz")
    assert ds.splits["train"].x.dtype == np.uint8 and ds.num_classes == 3


def test_empty_class_folder_named(tmp_path):
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    (tmp_path / "imgs" / "b").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "imgs" / "a" / "0.png")
    with pytest.raises(DataError, match="class 'b' has no images"):
        load_image_task("x", tmp_path / "imgs")


def test_a_long_csv_field_is_read(tmp_path):
    """csv's default cap is 128 KiB a field; a 2 MB document is an example like any other."""
    long = tmp_path / "long.csv"
    rows = [("word " * 400_000, "a")] + [(f"text {i}", "ab"[i % 2]) for i in range(40)]
    long.write_text("text,label\n" + "\n".join(f"{t},{lab}" for t, lab in rows))
    ds = load_text_task("long", long)
    assert max(len(t) for s in ds.splits.values() for t in s.x) == 2_000_000


@pytest.mark.parametrize("shape", [(30, 28, 28), (30, 28, 28, 1), (30, 1, 28, 28)])
def test_grayscale_npz_layouts_are_accepted_at_the_tasks_size(tmp_path, shape):
    x = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    np.savez(tmp_path / "g.npz", x=x, y=np.arange(30) % 3)
    train = load_image_task("g", tmp_path / "g.npz").splits["train"].x
    assert train.shape[1:] == (3, 32, 32) and train.dtype == np.uint8
    assert (train[:, 0] == train[:, 1]).all()  # grey: the same in every channel


def test_non_finite_images_are_refused_naming_the_first(tmp_path):
    x = np.random.default_rng(0).random((30, 32, 32, 3))
    x[4, 1, 2, 0] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=np.arange(30) % 3)
    with pytest.raises(DataError, match=r"nan.npz: x holds non-finite values .* index "
                                        r"\(4, 1, 2, 0\)"):
        load_image_task("n", tmp_path / "nan.npz")


def test_empty_texts_are_counted_and_a_majority_refused(tmp_path, capsys):
    from trainables.data.custom import load_text_task
    from trainables.data.splits import DataError

    quarter = tmp_path / "quarter.csv"
    quarter.write_text("text,label\n" + "\n".join(
        f"{'' if i % 4 == 0 else f'text {i}'},{'ab'[i % 2]}" for i in range(40)))
    data = load_text_task("q", quarter)
    assert len(data.splits["train"]) + len(data.splits["val"]) + len(data.splits["test"]) == 40
    assert f"warning: {quarter}: 10 of 40 texts are empty (the first is example 1)" \
        in capsys.readouterr().err
    most = tmp_path / "most.csv"
    most.write_text("text,label\n" + "\n".join(
        f"{'' if i % 4 else 't'},{'ab'[i % 2]}" for i in range(40)))
    with pytest.raises(DataError, match=r"most\.csv: 30 of 40 texts are empty"):
        load_text_task("m", most)
