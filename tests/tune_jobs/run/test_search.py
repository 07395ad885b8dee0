"""Our ASHA settings: promotions follow the reduction factor (Ray's scheduler, our config)."""

from types import SimpleNamespace

from ray.tune.schedulers import TrialScheduler

from tune_jobs.run import search
from tune_jobs.spec import presets


def _decisions(scores):
    spec = presets.build("smoke", sets=["asha.max_t=8", "asha.reduction_factor=2",
                                        "asha.grace_period=1"])
    sched = search.build_scheduler(spec)
    sched.set_search_properties("meta_score", "max")
    out = []
    for i, score in enumerate(scores):
        trial = SimpleNamespace(trial_id=f"t{i}")
        sched.on_trial_add(None, trial)
        out.append(sched.on_trial_result(None, trial, {"units": 1,
                                                       "meta_score": score}))
    return out


def test_worse_arrivals_are_stopped_at_the_first_rung():
    decisions = _decisions([0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    assert decisions[0] == TrialScheduler.CONTINUE
    assert decisions[1:] == [TrialScheduler.STOP] * 5


def test_top_half_promoted():
    # Against 4 recorded scores [0.1, 0.9, 0.2, 0.8], the cutoff is their median (0.5).
    decisions = _decisions([0.1, 0.9, 0.2, 0.8, 0.45, 0.55])
    assert decisions[4] == TrialScheduler.STOP and decisions[5] == TrialScheduler.CONTINUE


def test_trial_at_max_t_is_stopped():
    spec = presets.build("smoke")
    sched = search.build_scheduler(spec)
    sched.set_search_properties("meta_score", "max")
    trial = SimpleNamespace(trial_id="t")
    sched.on_trial_add(None, trial)
    result = {"units": spec.asha.max_t, "meta_score": 1.0}
    assert sched.on_trial_result(None, trial, result) == TrialScheduler.STOP


def test_rank_and_rush_build_transfer_asha_and_plain_asha_otherwise():
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from tune_jobs.run.transfer_asha import TransferASHA

    plain = presets.build("smoke")
    assert type(search.build_scheduler(plain)) is ASHAScheduler
    assert type(search.build_scheduler(plain, transferred=3)) is ASHAScheduler  # top_k
    rank = presets.build("smoke", sets=["metric_aggregate=rank"])
    assert isinstance(search.build_scheduler(rank), TransferASHA)
    assert rank.trial_aggregate == "mean"  # a trial reports the mean; ASHA ranks
    rush = presets.build("smoke", sets=["warm_start.method=rush"])
    sched = search.build_scheduler(rush, transferred=2)
    assert isinstance(sched, TransferASHA) and sched._rush_first == 2
    off = presets.build("smoke", sets=["asha.enabled=false"])
    assert type(search.build_scheduler(off)) is FIFOScheduler
    import cloudpickle

    cloudpickle.loads(cloudpickle.dumps(sched))  # Tune pickles the scheduler with its state
