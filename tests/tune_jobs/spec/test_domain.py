"""Domain: the one reader of the search-space format."""

from __future__ import annotations

import numpy as np
import pytest

from tune_jobs.spec.domain import Domain, parse_space


def test_kinds_bounds_and_round_trip():
    space = {"lr_scale": {"loguniform": [0.1, 10]}, "batch_size": [16, 32],
             "seed": {"randint": [0, 4]}, "dropout": 0.1}
    domains = parse_space(space)
    assert domains["lr_scale"].log and not domains["seed"].log
    assert domains["seed"].extremes() == [0, 3]  # randint's high is exclusive
    assert domains["batch_size"].extremes() == [16, 32] and domains["dropout"].extremes() == [0.1]
    assert not domains["dropout"].searched and domains["batch_size"].searched
    assert {k: d.to_data() for k, d in domains.items()} == space


@pytest.mark.parametrize("raw, message", [
    ({"normal": [0, 1]}, "use one of"),
    ({"uniform": [1, 0]}, "low < high"),
    ({"loguniform": [0, 1]}, "log scale needs low > 0"),
    ({"uniform": [True, 2]}, "need \\[low, high\\]"),
    ([], "at least one value"),
])
def test_bad_domains_name_the_key(raw, message):
    with pytest.raises(ValueError, match=f"space.x.*{message}"):
        Domain.parse("x", raw)


def test_contains():
    d = Domain.parse("k", {"randint": [1, 4]})
    assert d.contains(1) and d.contains(3) and not d.contains(4) and not d.contains(True)
    assert Domain.parse("k", ["a", "b"]).contains("a")
    assert not Domain.parse("k", ["a", "b"]).contains("c")
    assert Domain.parse("k", 5).contains(7)  # a constant leaves the key to the space


def test_sample_stays_inside_and_is_seeded():
    d = Domain.parse("k", {"loguniform": [0.01, 1.0]})
    a = [d.sample(np.random.default_rng(3)) for _ in range(2)]
    b = [d.sample(np.random.default_rng(3)) for _ in range(2)]
    assert a == b and all(d.contains(v) for v in a)
    ints = Domain.parse("k", {"randint": [0, 3]})
    rng = np.random.default_rng(0)
    assert {ints.sample(rng) for _ in range(50)} == {0, 1, 2}


def test_box():
    assert Domain.parse("k", {"uniform": [0, 1]}).box([0.2, 0.5]).to_data() == {"uniform": [0.2, 0.5]}
    assert Domain.parse("k", {"randint": [0, 9]}).box([2, 5]).to_data() == {"randint": [2, 6]}
    assert Domain.parse("k", {"uniform": [0, 1]}).box([0.3, 0.3]).to_data() == 0.3
    assert Domain.parse("k", [1, 2, 3]).box([3, 1]).to_data() == [1, 3]


def test_tune_domain():
    from ray import tune

    assert isinstance(Domain.parse("k", {"uniform": [0, 1]}).tune(), tune.search.sample.Float)
    assert isinstance(Domain.parse("k", [1, 2]).tune(), tune.search.sample.Categorical)
    assert Domain.parse("k", 3).tune() == 3
