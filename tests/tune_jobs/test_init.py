"""Old module paths that pickled Tune state names still resolve, to the same objects."""

from __future__ import annotations

import importlib
import pickle

import pytest

import tune_jobs


@pytest.mark.parametrize("old", sorted(tune_jobs._ALIASES))
def test_every_old_module_path_resolves_to_its_new_home(old):
    assert importlib.import_module(old) is importlib.import_module(tune_jobs._ALIASES[old])


def test_a_pickle_naming_an_old_path_loads_the_class_at_its_new_path():
    from tune_jobs.run.progress import LeaderboardCallback
    from tune_jobs.store.signing import SigningHandler

    for cls, old in ((SigningHandler, "tune_jobs.signing"),
                     (LeaderboardCallback, "tune_jobs.progress")):
        new = pickle.dumps(cls, protocol=0)  # text protocol: the module name is a plain line
        legacy = new.replace(cls.__module__.encode(), old.encode())
        assert old.encode() in legacy and pickle.loads(legacy) is cls
