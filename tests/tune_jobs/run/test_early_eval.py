"""The final evaluation's seeds started on a slot the search leaves idle: when, for which trial,
what the final evaluation then takes, and what is cancelled."""

import pickle
from types import SimpleNamespace

import pytest
from ray.tune.experiment import Trial

from tune_jobs.run import early_eval, final_eval
from tune_jobs.spec.search_spec import SearchSpec
from tune_jobs.store import rows


def _trial(tid, status, score=None, lr=1.0):
    return SimpleNamespace(trial_id=tid, status=status, config={"lr_scale": lr},
                           last_result={} if score is None else {"meta_score": score})


@pytest.fixture
def world(monkeypatch):
    """Ray's free resources, the started runs and the cancelled ones, all by hand."""
    state = SimpleNamespace(free={"CPU": 1.0}, started=[], cancelled=[], ended=set())

    def start(spec, config, run):
        state.started.append((dict(config), run))
        return f"ref-{config['lr_scale']}-{run[0]}-{run[1]}"

    monkeypatch.setattr(final_eval, "start_run", start)
    monkeypatch.setattr(early_eval, "start_run", start)
    monkeypatch.setattr(early_eval.ray, "available_resources", lambda: dict(state.free))
    monkeypatch.setattr(early_eval.ray, "wait", lambda refs, timeout=None: (
        [r for r in refs if r in state.ended], [r for r in refs if r not in state.ended]))
    monkeypatch.setattr(early_eval.ray, "cancel",
                        lambda ref, force=False: state.cancelled.append(ref))
    return state


def _spec(seeds=2, samples=3):
    return SearchSpec.from_dict({"name": "e", "num_samples": samples,
                                 "final_eval": {"seeds": seeds}})


BASE = final_eval.FINAL_SEED_BASE
FIRST = (BASE, "newsgroups")  # the first run: the first task of the first seed


def _ref(run, lr=1.0):
    return f"ref-{lr}-{run[0]}-{run[1]}"


def test_each_task_of_each_seed_is_a_run_of_its_own_with_that_tasks_resources():
    spec = _spec(seeds=2)
    assert final_eval.runs_of(spec) == [(BASE, "newsgroups"), (BASE, "cifar_transfer"),
                                         (BASE + 1, "newsgroups"), (BASE + 1, "cifar_transfer")]
    assert final_eval.run_resources(spec, "cifar_transfer") == spec.resources.to_ray()
    split = SearchSpec.from_dict({"name": "e", "task_resources": {
        "newsgroups": {"cpu": 1, "gpu": 1}, "cifar_transfer": {"cpu": 2}}})
    assert final_eval.run_resources(split, "newsgroups") == {"CPU": 1, "GPU": 1}
    assert final_eval.run_resources(split, "cifar_transfer") == {"CPU": 2, "GPU": 0}


def test_the_best_finished_trial_is_started_one_run_at_a_time_while_a_slot_is_free(world):
    cb = early_eval.EarlyFinalEval(_spec(seeds=2), gap_s=0, poll_s=0)
    trials = [_trial("a", Trial.TERMINATED, 0.3, lr=0.5), _trial("b", Trial.TERMINATED, 0.6),
              _trial("c", Trial.RUNNING, 0.7, lr=2.0)]
    cb.on_step_end(0, trials)
    assert world.started == [({"lr_scale": 1.0}, FIRST)]
    world.free = {"CPU": 0.0}  # the first run holds the slot
    cb.on_step_end(0, trials)
    assert len(world.started) == 1
    world.free = {"CPU": 1.0}
    for _ in range(5):  # every run started after four: nothing more
        cb.on_step_end(0, trials)
    assert [r for _, r in world.started] == final_eval.runs_of(_spec(seeds=2))
    assert world.cancelled == []


@pytest.mark.parametrize("case", ["a trial is still to come", "a trial waits to start",
                                  "nothing runs", "no slot is free", "no final evaluation"])
def test_nothing_starts_where_a_trial_could_use_the_slot_or_nothing_is_idle(world, case):
    trials = [_trial("a", Trial.TERMINATED, 0.3), _trial("b", Trial.RUNNING, 0.1)]
    spec = _spec(samples=2)
    if case == "a trial is still to come":
        spec = _spec(samples=3)
    elif case == "a trial waits to start":
        trials.append(_trial("c", Trial.PENDING))
        spec = _spec(samples=3)
    elif case == "nothing runs":
        trials[1].status = Trial.TERMINATED
    elif case == "no slot is free":
        world.free = {"CPU": 0.5}
    else:
        spec = _spec(seeds=0, samples=2)
    early_eval.EarlyFinalEval(spec, gap_s=0, poll_s=0).on_step_end(0, trials)
    assert world.started == []


def test_a_trial_waiting_to_start_cancels_the_runs_at_once(world):
    cb = early_eval.EarlyFinalEval(_spec(samples=2), gap_s=0, poll_s=0)
    trials = [_trial("a", Trial.TERMINATED, 0.3), _trial("b", Trial.RUNNING, 0.1)]
    cb.on_step_end(0, trials)
    assert len(world.started) == 1
    trials[1].status = Trial.PENDING  # a retry after a failure, say
    cb.on_step_begin(0, trials)
    assert world.cancelled == [_ref(FIRST)]
    assert cb.runs == {}


def test_a_better_finished_trial_replaces_the_runs_of_the_one_before(world):
    cb = early_eval.EarlyFinalEval(_spec(samples=3), gap_s=0, poll_s=0)
    trials = [_trial("a", Trial.TERMINATED, 0.3, lr=0.5), _trial("b", Trial.RUNNING, 0.1),
              _trial("c", Trial.RUNNING, 0.2, lr=2.0)]
    cb.on_step_end(0, trials)
    trials[2].last_result = {"meta_score": 0.9}
    trials[2].status = Trial.TERMINATED
    cb.on_step_end(0, trials)
    assert world.cancelled == [_ref(FIRST, 0.5)]
    assert world.started[-1] == ({"lr_scale": 2.0}, FIRST)
    assert cb.trial_id == "c"


def test_the_final_evaluation_takes_the_winners_runs_and_cancels_a_loser(world):
    cb = early_eval.EarlyFinalEval(_spec(samples=2), gap_s=0, poll_s=0)
    trials = [_trial("a", Trial.TERMINATED, 0.3), _trial("b", Trial.RUNNING, 0.1)]
    cb.on_step_end(0, trials)
    assert cb.take("a", {"lr_scale": 1.0}) == {FIRST: _ref(FIRST)}
    assert cb.runs == {} and world.cancelled == []
    cb.on_step_end(0, trials)
    assert cb.take("b", {"lr_scale": 1.0}) == {}  # the running trial won: these were a guess
    assert world.cancelled == [_ref(FIRST)]
    cb.on_step_end(0, trials)
    assert cb.take("a", {"lr_scale": 3.0}) == {}  # same id, another config: not the winner's


def test_evaluate_on_test_uses_the_started_runs_and_starts_only_the_others(world,
                                                                          monkeypatch):
    """Each seed's metrics join its tasks' runs, its meta-score their aggregate (mean)."""
    scores = {(BASE, "newsgroups"): 0.4, (BASE, "cifar_transfer"): 0.6,
              (BASE + 1, "newsgroups"): 0.6, (BASE + 1, "cifar_transfer"): 0.8}
    results = {_ref(r): ({f"{r[1]}/test_score": v, f"{r[1]}/test_acc": v, "test_meta_score": v},
                         {"setup": 1.0, "train": 10.0, "eval": 2.0}) for r, v in scores.items()}
    monkeypatch.setattr("ray.wait", lambda refs, num_returns: (refs[:1], refs[1:]))
    monkeypatch.setattr("ray.get", lambda ref: results[ref])
    out = final_eval.evaluate_on_test(_spec(seeds=2), {"lr_scale": 1.0},
                                      started={FIRST: _ref(FIRST)})
    assert [r for _, r in world.started] == final_eval.runs_of(_spec(seeds=2))[1:]
    assert out.seeds == [BASE, BASE + 1]
    assert out.metrics["test_meta_score"]["values"] == pytest.approx([0.5, 0.7])
    assert out.metrics["newsgroups/test_acc"]["values"] == [0.4, 0.6]
    assert out.metrics["cifar_transfer/test_score"]["mean"] == pytest.approx(0.7)
    assert out.seconds == {"setup": 4.0, "train": 40.0, "eval": 8.0}  # all four runs


def test_the_copy_a_restored_tuner_brings_back_does_nothing(world):
    """Tune pickles its callbacks into tuner.pkl; a resumed search has no one to hand that
    copy's runs to, so it starts none (and carries no refs)."""
    cb = early_eval.EarlyFinalEval(_spec(samples=2), gap_s=0, poll_s=0)
    trials = [_trial("a", Trial.TERMINATED, 0.3), _trial("b", Trial.RUNNING, 0.1)]
    cb.on_step_end(0, trials)
    copy = pickle.loads(pickle.dumps(cb))
    assert copy.runs == {} and copy.trial_id is None and copy.spec == cb.spec
    copy.on_step_end(0, trials)
    assert len(world.started) == 1 and not copy.active


def test_after_a_start_the_next_waits_gap_seconds_unless_that_run_has_ended(world):
    cb = early_eval.EarlyFinalEval(_spec(samples=2), gap_s=3600, poll_s=0)
    trials = [_trial("a", Trial.TERMINATED, 0.3), _trial("b", Trial.RUNNING, 0.1)]
    cb.on_step_end(0, trials)
    cb.on_step_end(0, trials)  # Ray's free CPUs lag the first start: no second one yet
    assert len(world.started) == 1
    world.ended.add(_ref(FIRST))  # the first run is done: its slot takes the next at once
    cb.on_step_end(0, trials)
    assert [r for _, r in world.started] == final_eval.runs_of(_spec(samples=2))[:2]


def test_free_resources_are_read_at_most_every_poll_seconds(world, monkeypatch):
    clock = SimpleNamespace(now=100.0)
    monkeypatch.setattr(early_eval.time, "monotonic", lambda: clock.now)
    reads = []
    monkeypatch.setattr(early_eval.ray, "available_resources",
                        lambda: reads.append(clock.now) or {"CPU": 0.0})
    cb = early_eval.EarlyFinalEval(_spec(samples=2), gap_s=0, poll_s=0.5)
    trials = [_trial("a", Trial.TERMINATED, 0.3), _trial("b", Trial.RUNNING, 0.1)]
    for step in range(5):  # Tune's steps, 0.2 s apart
        clock.now = 100.0 + 0.2 * step
        cb.on_step_end(0, trials)
    assert reads == pytest.approx([100.0, 100.6])
    assert world.started == []  # no slot was free at either read


def test_a_failure_in_here_is_one_warning_and_never_fails_the_search(world, monkeypatch,
                                                                     capsys):
    def broken():
        raise ConnectionError("GCS unreachable")

    monkeypatch.setattr(early_eval.ray, "available_resources", broken)
    cb = early_eval.EarlyFinalEval(_spec(samples=2), gap_s=0, poll_s=0)
    trials = [_trial("a", Trial.TERMINATED, 0.3), _trial("b", Trial.RUNNING, 0.1)]
    cb.on_step_end(0, trials)
    cb.on_step_end(0, trials)
    assert not cb.active and world.started == []
    err = capsys.readouterr().err
    assert err.count("warning: the final evaluation is not started early (GCS unreachable)") == 1


def test_final_eval_early_is_on_by_default_and_off_with_false():
    from tune_jobs.run.pipeline import _early_final_eval

    assert [type(c).__name__ for c in _early_final_eval(_spec(), True)] == ["EarlyFinalEval"]
    off = SearchSpec.from_dict({"name": "e", "final_eval": {"seeds": 2, "early": False}})
    assert _early_final_eval(off, True) == []
    assert _early_final_eval(_spec(), False) == []  # no final evaluation, or a resumed search
    with pytest.raises(ValueError, match="final_eval.early"):
        SearchSpec.from_dict({"name": "e", "final_eval": {"early": "yes"}})


def test_a_failed_run_cancels_the_runs_still_going(world, monkeypatch):
    def get(ref):
        raise RuntimeError(f"{ref} failed")

    monkeypatch.setattr("ray.wait", lambda refs, num_returns: (refs[:1], refs[1:]))
    monkeypatch.setattr("ray.get", get)
    monkeypatch.setattr("ray.cancel", lambda ref, force=False: world.cancelled.append(ref))
    with pytest.raises(RuntimeError, match=f"{_ref(FIRST)} failed"):
        final_eval.evaluate_on_test(_spec(seeds=3), {"lr_scale": 1.0},
                                    started={FIRST: _ref(FIRST)})
    assert world.cancelled == [_ref(r) for r in final_eval.runs_of(_spec(seeds=3))[1:]]


def test_with_each_tasks_seconds_the_longest_tasks_runs_start_first():
    spec = _spec(seeds=2)
    assert final_eval.runs_of(spec, {"newsgroups": 2.0, "cifar_transfer": 9.0}) == [
        (BASE, "cifar_transfer"), (BASE + 1, "cifar_transfer"),
        (BASE, "newsgroups"), (BASE + 1, "newsgroups")]
    assert final_eval.runs_of(spec, {"newsgroups": 9.0, "cifar_transfer": 2.0}) == [
        (BASE, "newsgroups"), (BASE + 1, "newsgroups"),
        (BASE, "cifar_transfer"), (BASE + 1, "cifar_transfer")]
    assert final_eval.runs_of(spec, {}) == final_eval.runs_of(spec)  # unknown: seed by seed
    report = {"newsgroups/train_s": 2.0, "newsgroups/eval_s": 0.5,
              "cifar_transfer/train_s": 0.4, "cifar_transfer/eval_s": 0.1}
    assert rows.unit_seconds(report, spec.tasks) == {"newsgroups": 2.5, "cifar_transfer": 0.5}
    assert rows.unit_seconds({"newsgroups/train_s": 2.0}, spec.tasks) == {}


def test_the_early_runs_and_the_rest_follow_the_winners_seconds(world, monkeypatch):
    spec = _spec(seeds=2, samples=2)
    cb = early_eval.EarlyFinalEval(spec, gap_s=0, poll_s=0)
    trials = [_trial("a", Trial.TERMINATED, 0.3), _trial("b", Trial.RUNNING, 0.1)]
    trials[0].last_result.update({"newsgroups/train_s": 0.5, "newsgroups/eval_s": 0.1,
                                  "cifar_transfer/train_s": 3.0, "cifar_transfer/eval_s": 0.2})
    cb.on_step_end(0, trials)
    assert world.started == [({"lr_scale": 1.0}, (BASE, "cifar_transfer"))]
    seconds = rows.unit_seconds(trials[0].last_result, ["newsgroups", "cifar_transfer"])
    results = {_ref(r): ({f"{r[1]}/test_score": 0.5, "test_meta_score": 0.5},
                         {"setup": 0.0, "train": 1.0, "eval": 0.0})
               for r in final_eval.runs_of(spec)}
    monkeypatch.setattr("ray.wait", lambda refs, num_returns: (refs[:1], refs[1:]))
    monkeypatch.setattr("ray.get", lambda ref: results[ref])
    final_eval.evaluate_on_test(spec, {"lr_scale": 1.0}, cb.take("a", {"lr_scale": 1.0}), seconds)
    assert [r for _, r in world.started] == [(BASE, "cifar_transfer"), (BASE + 1, "cifar_transfer"),
                                             (BASE, "newsgroups"), (BASE + 1, "newsgroups")]
