import math

import pytest

from trainables import objective


def test_normalise():
    assert objective.normalise(0.05, 0.05, 0.75) == 0.0
    assert objective.normalise(0.75, 0.05, 0.75) == pytest.approx(1.0)
    assert objective.normalise(0.40, 0.05, 0.75) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="reference=0.05"):
        objective.normalise(0.5, 0.1, 0.05)


def test_aggregate():
    assert objective.aggregate([0.2, 0.6]) == pytest.approx(0.4)
    assert objective.aggregate([0.2, 0.6], "min") == 0.2
    assert objective.aggregate([0.2, 0.8], "geomean") == pytest.approx(0.4)
    # a task at (or below) chance counts as the floor: the fast task cannot carry the score
    assert objective.aggregate([-0.1, 0.9], "geomean") == pytest.approx((0.01 * 0.9) ** 0.5)
    assert objective.aggregate([0.0, 0.9], "geomean") < objective.aggregate([0.3, 0.3], "geomean")
    assert objective.aggregate([0.0, 0.9]) > objective.aggregate([0.3, 0.3])  # the mean: not so
    with pytest.raises(ValueError, match="aggregate='median'"):
        objective.aggregate([1.0], "median")


def test_validate_report():
    report = {k: 0.5 for k in objective.required_keys(["a"])}
    objective.validate_report(report, ["a"])
    with pytest.raises(ValueError, match=r"missing metric\(s\) \['a/val_acc'\]"):
        objective.validate_report({k: v for k, v in report.items() if k != "a/val_acc"}, ["a"])
    with pytest.raises(ValueError, match="non-finite"):
        objective.validate_report({**report, "meta_score": math.nan}, ["a"])
