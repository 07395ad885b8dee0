"""The shared split rules: stratified seeded validation carve, subsets, label checks."""

import numpy as np
import pytest

from trainables.data.splits import (
    DataError,
    Split,
    carve_validation,
    check_labels,
    image_chw,
    subsample,
    three_splits,
)


def _data(n=200, classes=4):
    y = np.arange(n) % classes
    return [f"text {i}" for i in range(n)], y


def test_carve_is_stratified_seeded_and_disjoint():
    x, y = _data()
    train, val = carve_validation(x, y, 0.1, seed=0)
    assert len(train) == 180 and len(val) == 20
    assert np.bincount(val.y).tolist() == [5, 5, 5, 5]  # stratified
    assert set(train.x).isdisjoint(val.x) and set(train.x) | set(val.x) == set(x)
    again, _ = carve_validation(x, y, 0.1, seed=0)
    other, _ = carve_validation(x, y, 0.1, seed=1)
    assert again.x == train.x and other.x != train.x
    with pytest.raises(ValueError, match=r"^val_frac=1.0 is invalid"):
        carve_validation(x, y, 1.0, seed=0)


def test_carve_keeps_arrays_arrays():
    x = np.arange(40 * 3).reshape(40, 3)
    train, val = carve_validation(x, np.arange(40) % 2, 0.25, seed=0)
    assert isinstance(train.x, np.ndarray) and train.x.shape == (30, 3) and len(val) == 10
    assert (train.x[:, 0] // 3 % 2 == train.y).all()  # inputs stay with their labels


def test_subsample_limits_stratified_and_zero_keeps_all():
    x, y = _data()
    split = Split(x, y)
    assert subsample(split, 0, seed=0) is split and subsample(split, 500, seed=0) is split
    small = subsample(split, 40, seed=0)
    assert len(small) == 40 and np.bincount(small.y).tolist() == [10, 10, 10, 10]
    tiny = subsample(split, 2, seed=0)  # fewer than the classes: not stratified, still valid
    assert len(tiny) == 2


def test_check_labels_names_the_problem():
    assert check_labels([0, 1, 1], 2, "f").dtype == np.int64
    with pytest.raises(DataError, match=r"^f: label 3 is outside 0..1"):
        check_labels([0, 3], 2, "f")
    with pytest.raises(DataError, match=r"^f: class\(es\) \[2\] have no examples"):
        check_labels([0, 1], 3, "f")
    assert check_labels([0], 3, "f", require_all=False).tolist() == [0]
    with pytest.raises(DataError, match=r"^f: labels must be a flat list"):
        check_labels([[0, 1]], 2, "f")


def test_three_splits_keeps_a_given_test_split_else_carves_one():
    x, y = _data()
    test = Split(["t0", "t1"], np.array([0, 1]))
    given = three_splits(x, y, test, 0.1, seed=3)
    assert given["test"] is test and len(given["train"]) + len(given["val"]) == 200
    carved = three_splits(x, y, None, 0.1, seed=3)
    seen = [set(carved[k].x) for k in ("train", "val", "test")]
    assert sum(map(len, seen)) == 200 and not (seen[0] & seen[1] or seen[0] & seen[2])
    assert len(carved["test"]) == 20 and len(carved["val"]) == 18
    # the validation carve uses the same seed either way: the same rule, one owner
    assert three_splits(x, y, None, 0.1, seed=3)["val"].x == carved["val"].x


def test_image_chw_is_rgb_32_uint8_channels_first():
    from PIL import Image

    grey = Image.fromarray(np.full((50, 40), 7, dtype=np.uint8), mode="L")
    arr = image_chw(grey)
    assert arr.shape == (3, 32, 32) and arr.dtype == np.uint8 and (arr == 7).all()
