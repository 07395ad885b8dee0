"""The shared loop's pieces: seeded batch order whose position is part of the checkpoint."""

import pytest
import torch

from trainables.loop import BatchOrder, macro_f1


def _take(order, n):
    return [order.next().tolist() for _ in range(n)]


def test_epoch_covers_every_example_once_and_drops_the_ragged_tail():
    order = BatchOrder(10, 3, seed=0)
    epoch = _take(order, 3)
    seen = [i for batch in epoch for i in batch]
    assert len(seen) == 9 and len(set(seen)) == 9 and set(seen) <= set(range(10))
    assert order.cursor == 9
    order.next()  # the tenth example alone is not a batch: a new permutation starts
    assert order.cursor == 3


def test_same_seed_same_order_other_seed_other_order():
    assert _take(BatchOrder(50, 8, seed=1), 10) == _take(BatchOrder(50, 8, seed=1), 10)
    assert _take(BatchOrder(50, 8, seed=1), 10) != _take(BatchOrder(50, 8, seed=2), 10)


def test_state_round_trip_continues_the_same_sequence():
    straight = BatchOrder(20, 6, seed=3)
    expected = _take(straight, 9)  # crosses several epoch boundaries
    first = BatchOrder(20, 6, seed=3)
    part = _take(first, 4)
    tensors, state = first.state()
    resumed = BatchOrder(20, 6, seed=99)  # a different seed: the state must win
    resumed.load({k: v.clone() for k, v in tensors.items()}, state)
    assert part + _take(resumed, 5) == expected


def test_batch_larger_than_the_split_and_empty_split():
    order = BatchOrder(4, 32, seed=0)
    assert sorted(order.next().tolist()) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"^n=0 is invalid: the training split is empty$"):
        BatchOrder(0, 8, seed=0)
    assert isinstance(order.next(), torch.Tensor)


def test_macro_f1_is_scikit_learns_on_any_labels_including_classes_never_predicted():
    """The trial's own macro-F1 equals ``f1_score(average="macro", zero_division=0)``: over
    the classes in either array, a class never predicted (or never true) scoring 0."""
    import numpy as np
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    cases = [(np.array([0, 0, 1]), np.array([0, 0, 1])),  # perfect
             (np.array([0, 1, 2]), np.array([3, 3, 3])),  # nothing right, a class only predicted
             (np.array([5]), np.array([7]))]
    for _ in range(200):
        n, k = int(rng.integers(1, 60)), int(rng.integers(1, 12))
        cases.append((rng.integers(0, k, n), rng.integers(0, k + 2, n)))
    for y, p in cases:
        assert macro_f1(y, p) == pytest.approx(
            f1_score(y, p, average="macro", zero_division=0), abs=1e-12)


def test_a_trial_process_does_not_import_scikit_learn():
    """Every trial and final-evaluation process imports the trainable; scikit-learn (and the
    SciPy under it) would add about 2 s to each start, for a metric computed here instead."""
    import subprocess
    import sys

    code = ("import sys, trainables.trainable; "
            "print(sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
