"""The shared loop's pieces: seeded batch order whose position is part of the checkpoint."""

import pytest
import torch

from trainables.loop import BatchOrder


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
