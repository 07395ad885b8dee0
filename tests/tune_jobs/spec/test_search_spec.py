"""The typed search spec: presets, --config and --set give one checked SearchSpec."""

import dataclasses

import numpy as np
import pytest

from trainables.config import MetaConfig, TaskSpec, TextOptions, VisionOptions
from tune_jobs.spec import presets
from tune_jobs.spec.search_spec import DEFAULT_SPACE, Asha, Resources, SearchSpec, param_space


def test_space_covers_every_metaconfig_field():
    assert set(DEFAULT_SPACE) == {f.name for f in dataclasses.fields(MetaConfig)}


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_presets_sample_valid_configs_and_parse_their_tasks(name):
    spec = presets.build(name)
    assert isinstance(spec, SearchSpec) and isinstance(spec.asha, Asha)
    assert isinstance(spec.resources, Resources)
    space = param_space(spec.space)
    for _ in range(20):
        MetaConfig.from_dict({k: (v.sample() if hasattr(v, "sample") else v)
                              for k, v in space.items()})
    settings = spec.trial_settings(".")
    assert settings.max_units == spec.asha.max_t
    assert all(isinstance(t, TaskSpec) for t in settings.tasks)
    assert isinstance(settings.task("newsgroups").model, TextOptions)
    assert isinstance(settings.task("cifar_transfer").model, VisionOptions)


def test_defaults_live_in_one_place():
    spec = presets.build("smoke")
    assert spec.experiment == "metatune-smoke" and spec.name is None
    assert SearchSpec.from_dict({}).experiment == "metatune-custom"
    # a preset's partial section keeps the defaults of the keys it does not name
    assert spec.asha.brackets == Asha().brackets
    assert spec.space["weight_decay"] == DEFAULT_SPACE["weight_decay"]


def test_every_source_gives_the_same_type(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("num_samples: 5\nspace:\n  lr_scale: {loguniform: [0.5, 2.0]}\n"
                 "asha: {max_t: 6}\n")
    from_file = presets.build("smoke", config=f)
    from_sets = presets.build("smoke", sets=["num_samples=5", "asha.max_t=6",
                                             "space.lr_scale={loguniform: [0.5, 2.0]}"])
    assert from_file == from_sets
    assert from_file.num_samples == 5 and from_file.asha.max_t == 6
    assert from_file.asha.grace_period == 2  # the rest of the preset's section stays
    assert from_file.space["batch_size"] == [16, 32]  # ... and the rest of its space
    assert SearchSpec.from_dict(from_file.to_dict()) == from_file  # the saved form reads back


def test_sets_merge_into_task_options_and_add_sections():
    spec = presets.build("smoke", sets=["task_options.newsgroups.max_length=32",
                                        "kind_options.text.steps_per_unit=7",
                                        "space.dropout={uniform: [0.0, 0.5]}"])
    assert spec.task_options["newsgroups"] == {"max_length": 32}
    assert spec.kind_options["text"] == {**presets.PRESETS["smoke"]["kind_options"]["text"],
                                         "steps_per_unit": 7}  # merged, not replaced
    assert spec.space["dropout"] == {"uniform": [0.0, 0.5]}
    task = spec.trial_settings(".").task("newsgroups")
    assert task.model.max_length == 32 and task.budget.steps_per_unit == 7
    assert task.model.model == "tiny"  # the rest from the preset's text options


@pytest.mark.parametrize("preset, model", [("smoke", "tiny"), ("cpu", "minilm"),
                                           ("gpu", "bert-base-uncased")])
def test_a_preset_applies_to_every_task_of_a_kind(preset, model, tmp_path):
    """A custom text task (a file, or hf:) under a preset takes the preset's text model and
    budget, and a custom image task its image options; the task's own options still win."""
    (tmp_path / "t.csv").write_text("text,label\n" + "\n".join(f"x {i},{i % 2}"
                                                                for i in range(20)))
    (tmp_path / "hf").mkdir()
    np.savez(tmp_path / "i.npz", x=np.zeros((20, 32, 32, 3), np.uint8), y=np.arange(20) % 2)
    spec = presets.build(preset, sets=[
        "tasks=[t, h, i, newsgroups]",
        f"custom_tasks.t={{type: text, train: {tmp_path / 't.csv'}}}",
        f"custom_tasks.h={{type: text, hf: {tmp_path / 'hf'}}}",
        f"custom_tasks.i={{type: image, train: {tmp_path / 'i.npz'}}}",
        "task_options.h.max_length=16"])
    kinds = presets.PRESETS[preset]["kind_options"]
    by_name = {t.name: t for t in spec.parsed.tasks}
    for name in ("t", "h", "newsgroups"):
        assert by_name[name].model.model == model
        assert by_name[name].budget.steps_per_unit == kinds["text"]["steps_per_unit"]
    assert by_name["h"].model.max_length == 16
    assert by_name["t"].model.max_length == kinds["text"]["max_length"]
    assert by_name["i"].model.source_steps == kinds["image"]["source_steps"]


def test_kind_options_are_checked():
    with pytest.raises(ValueError, match=r"kind_options\.audio is not a kind of task"):
        presets.build("smoke", sets=["kind_options.audio={model: tiny}"])
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['remove'\] in kind_options\.text"):
        presets.build("smoke", sets=["kind_options.text.remove=[headers]"])


def test_exponent_floats_are_numbers():
    spec = presets.build("smoke", sets=["task_options.newsgroups.base_lr=1e-3",
                                        "space.weight_decay={loguniform: [1e-5, 1e-1]}"])
    assert spec.trial_settings(".").task("newsgroups").budget.base_lr == 1e-3
    assert spec.space["weight_decay"] == {"loguniform": [1e-5, 0.1]}
    assert presets.parse_value("abc") == "abc" and presets.parse_value("1") == 1


def test_cli_flags_override_and_tasks_may_be_a_comma_list():
    spec = presets.build("smoke", overrides={"tasks": "newsgroups", "num_samples": 3,
                                             "name": None})
    assert spec.tasks == ("newsgroups",) and spec.num_samples == 3


@pytest.mark.parametrize("sets,match", [
    (["space.lr_scale={loguniform: [0.0, 1.0]}"],
     r"^space.lr_scale.loguniform=\[0.0, 1.0\] is invalid: log scale needs low > 0$"),
    (["space.lr_scale={uniform: [-1.0, 1.0]}"], r"^lr_scale=-1.0 is invalid"),
    (["space.optimizer=[adam]"], r"^optimizer='adam' is invalid"),
    (["space.unfreeze_frac=1.5"], r"^unfreeze_frac=1.5 is invalid"),
    (["space.learning_rate=0.1"], r"^unknown key\(s\) \['learning_rate'\] in space"),
    (["asha.grace_period=9"], r"^asha.grace_period=9 is invalid: must be <= asha.max_t=8$"),
    (["asha.reduction_factor=1"], r"^asha.reduction_factor=1 is invalid"),
    (["asha=5"], r"^asha=5 is invalid: must be a mapping"),
    (["asha.max_t=0"], r"^asha.max_t=0 is invalid: must be an integer >= 1$"),
    (["num_samples=0"], r"^num_samples=0 is invalid"),
    (["searcher=grid"], r"^searcher='grid' is invalid"),
    (["search_seed=abc"], r"^search_seed='abc' is invalid: must be an integer >= 0$"),
    (["search_seed=-1"], r"^search_seed=-1 is invalid"),
    (["keep_checkpoints=0"], r"^keep_checkpoints=0 is invalid: must be an integer >= 1$"),
    (["max_failures=-5"], r"^max_failures=-5 is invalid: must be an integer >= 0$"),
    (["max_concurrent=-1"], r"^max_concurrent=-1 is invalid"),
    (["checkpoint_every=0"], r"^checkpoint_every=0 is invalid"),
    (["feature_cache_limit=4 apples"], r"^feature_cache_limit='4 apples' is invalid: a size"),
    (["feature_cache_limit=-1"], r"^feature_cache_limit=-1 is invalid: a size"),
    (["feature_dtype=int8"], r"^feature_dtype='int8' is invalid: choose one of"),
    (["space.head_init=zeros"], r"^head_init='zeros' is invalid: must be one of"),
    (["final_eval.seeds=-1"], r"^final_eval.seeds=-1 is invalid"),
    (["metric_aggregate=median"], r"^metric_aggregate='median' is invalid"),
    (["device=tpu"], r"^device='tpu' is invalid"),
    (["device=cuda"], r"^device='cuda' is invalid: a trial gets a GPU only if it asks for one"),
    (["head_store=maybe"], r"^head_store='maybe' is invalid"),
    (["name=a/b"], r"^name='a/b' is invalid"),
    (["resources.gpu=1.5"], r"^resources.gpu=1.5 is invalid"),
    (["resources.cpu=0"], r"^resources.cpu=0 is invalid"),
    (["resources.tpu=1"], r"^unknown key\(s\) \['tpu'\] in resources"),
    (["tasks=[mnist]"], r"^unknown task 'mnist'"),
    (["task_options.newsgroups.max_lenght=3"],
     r"^unknown key\(s\) \['max_lenght'\] in task_options.newsgroups"),
    (["task_options.cifar_transfer.width=0"], r"^task_options.cifar_transfer.width=0 is invalid"),
    (["task_options.newsgroups.remove=[signatures]"], r"^task_options.newsgroups.remove="),
    (["task_resources={mnist: {cpu: 1}}"], r"^task_resources.mnist names no task"),
    (["task_resources={newsgroups: {gpu: -1}}"], r"^task_resources.newsgroups.gpu=-1 is invalid"),
    (["bogus=1"], r"^--set bogus: unknown key|^unknown key\(s\) \['bogus'\] in the search spec"),
    (["asha.max_t"], r"^--set 'asha.max_t' is invalid: use key=value"),
])
def test_bad_values_are_refused_naming_key_and_value(sets, match):
    with pytest.raises(ValueError, match=match):
        presets.build("smoke", sets=sets)


def test_config_file_errors_name_the_file_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("num_samples: 3\nasha: [\n")
    with pytest.raises(ValueError, match=rf"^--config {bad}: invalid YAML at line 3, column 1"):
        presets.build("smoke", config=bad)
    js = tmp_path / "bad.json"
    js.write_text('{"num_samples": 3,\n "asha": }')
    with pytest.raises(ValueError, match=rf"^--config {js}: invalid JSON at line 2, column 10"):
        presets.build("smoke", config=js)
    section = tmp_path / "section.yaml"
    section.write_text("asha: 5\n")
    with pytest.raises(ValueError, match=rf"^--config {section}: asha=5 is invalid"):
        presets.build("smoke", config=section)
    code = tmp_path / "code.yaml"
    code.write_text("num_samples: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ValueError, match=rf"^--config {code}: invalid YAML"):
        presets.build("smoke", config=code)
    assert not (tmp_path / "pwned").exists()


def test_optuna_searcher_takes_the_space():
    from ray.tune.search.optuna import OptunaSearch

    from tune_jobs.run import search

    spec = presets.build("smoke", sets=["searcher=optuna"])
    limiter = search.build_searcher(spec)
    assert isinstance(limiter.searcher, OptunaSearch)
    dists = OptunaSearch.convert_search_space(param_space(spec.space))
    assert dists["lr_scale"].log and dists["lr_scale"].low == 0.3
    assert set(dists) == {k for k, v in spec.space.items() if isinstance(v, (dict, list))}


def test_task_resources_select_the_scale_out_form():
    assert presets.build("smoke").task_bundles() is None
    spec = presets.build("smoke", sets=["task_resources={newsgroups: {cpu: 2, gpu: 0.5}}"])
    # one bundle per task, in task order; a task not named gets one CPU
    assert spec.task_bundles() == [{"CPU": 2, "GPU": 0.5}, {"CPU": 1, "GPU": 0}]


@pytest.mark.parametrize("how", ["mean", "min", "geomean"])
def test_every_aggregate_the_spec_accepts_reaches_the_trials(how):
    spec = presets.build("smoke", sets=[f"metric_aggregate={how}"])
    assert spec.trial_settings().aggregate == how


def test_a_copy_parses_nothing_and_touches_no_disk(tmp_path, monkeypatch):
    """The tasks are parsed once; dataclasses.replace carries them unless the task inputs
    change (then the copy parses again, and checks its paths)."""
    import dataclasses

    from tune_jobs.spec import search_spec

    train = tmp_path / "train.csv"
    train.write_text("text,label\na,x\nb,y\n")
    spec = SearchSpec.from_dict({"tasks": ["mine"], "custom_tasks": {
        "mine": {"type": "text", "train": str(train)}}})
    calls = []
    original = search_spec.parse_tasks
    monkeypatch.setattr(search_spec, "parse_tasks",
                        lambda *a, **k: calls.append(a) or original(*a, **k))
    train.unlink()  # a copy must not look at the disk again
    copy = dataclasses.replace(spec, num_samples=3, name="other")
    assert calls == [] and copy.trial_settings().tasks == spec.trial_settings().tasks
    assert "parsed" not in spec.to_dict()
    with pytest.raises(ValueError, match=r"custom_tasks.mine.train=.*no such file"):
        dataclasses.replace(spec, task_options={"mine": {"max_length": 32}})
    assert len(calls) == 1
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['parsed'\]"):
        SearchSpec.from_dict({"parsed": None})


def test_checkpoints_at_the_rungs_the_last_unit_and_every_n():
    from trainables.trainable import checkpoints_at
    from tune_jobs.report.analysis import asha_rungs
    from tune_jobs.spec import presets

    cpu = presets.build("cpu")  # max_t 8, grace 2, rf 2: rungs 2 and 4
    assert cpu.asha.rungs() == [2, 4] and cpu.checkpoint_every == 4
    assert cpu.checkpoint_units() == [2, 4, 8]
    smoke = presets.build("smoke")
    assert smoke.checkpoint_every == 4 and smoke.checkpoint_units() == [2, 4, 8]  # the default
    every = presets.build("smoke", sets=["checkpoint_every=1"])
    assert every.checkpoint_units() == list(range(1, 9))
    gpu = presets.build("gpu")  # max_t 16, grace 2, rf 3: rungs 2 and 6
    assert gpu.checkpoint_units() == [2, 4, 6, 8, 12, 16]
    settings = gpu.trial_settings("x")
    assert [u for u in range(1, 17) if checkpoints_at(u, settings)] == gpu.checkpoint_units()
    # the rungs are Ray's own, for any setting
    for sets in (["asha.max_t=27", "asha.grace_period=1", "asha.reduction_factor=3"],
                 ["asha.max_t=100", "asha.grace_period=3", "asha.reduction_factor=4",
                  "asha.brackets=3"], ["asha.max_t=9", "asha.grace_period=9"]):
        a = presets.build("smoke", sets=sets).asha
        assert a.rungs() == [u for u in asha_rungs(a.max_t, a.grace_period, a.reduction_factor,
                                                   a.brackets) if u < a.max_t]
    off = presets.build("smoke", sets=["asha.enabled=false", "checkpoint_every=4"])
    assert off.checkpoint_units() == [4, 8]
