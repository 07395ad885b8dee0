"""Tasks from Hugging Face `datasets`, built here with `datasets` itself and saved locally:
save_to_disk and parquet folders, ClassLabel and string labels, text and images, a trial on it,
and the bad input named before anything runs. Nothing touches the network."""

from __future__ import annotations

import numpy as np
import pytest

from trainables.config import HFSource
from trainables.data.hf import load_hf_task
from trainables.data.splits import DataError

WORDS = {"pos": ["good", "great", "fine", "happy"], "neg": ["bad", "awful", "sad", "poor"]}


def text_dataset(n=60, label_feature="classlabel"):
    import datasets

    rng = np.random.default_rng(0)
    labels = ["neg", "pos"] * (n // 2)
    texts = [" ".join(rng.choice(WORDS[lab], 5)) for lab in labels]
    if label_feature == "classlabel":
        feats = datasets.Features({"sentence": datasets.Value("string"),
                                   "y": datasets.ClassLabel(names=["neg", "pos"])})
        return datasets.Dataset.from_dict({"sentence": texts, "y": [int(lab == "pos")
                                                                    for lab in labels]}, feats)
    return datasets.Dataset.from_dict({"sentence": texts, "y": labels})


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    import datasets

    root = tmp_path_factory.mktemp("hf")
    data = datasets.DatasetDict({"train": text_dataset(60), "test": text_dataset(20)})
    data.save_to_disk(str(root / "saved"))
    (root / "parquet").mkdir()
    text_dataset(60, "strings").to_parquet(str(root / "parquet" / "train.parquet"))
    text_dataset(20, "strings").to_parquet(str(root / "parquet" / "test.parquet"))
    rng = np.random.default_rng(1)
    images = [(rng.integers(0, 80, (16, 16, 3)) + 150 * (i % 2)).astype(np.uint8)
              for i in range(40)]
    from PIL import Image

    img = datasets.Dataset.from_dict(
        {"img": [Image.fromarray(a) for a in images], "label": [i % 2 for i in range(40)]},
        datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])}))
    datasets.DatasetDict({"train": img}).save_to_disk(str(root / "images"))
    ids = datasets.Dataset.from_dict({"sentence": [f"t {i}" for i in range(1500)],
                                      "y": list(range(1500))})
    datasets.DatasetDict({"train": ids, "test": ids}).save_to_disk(str(root / "ids"))
    return root


def test_save_to_disk_with_classlabel(saved, tmp_path):
    src = HFSource(str(saved / "saved"), text_column="sentence", label_column="y")
    ds = load_hf_task("reviews", "text", src, cache_dir=str(tmp_path))
    assert ds.label_names == ["neg", "pos"] and ds.num_classes == 2
    assert len(ds.splits["test"]) == 20 and len(ds.splits["train"]) + len(ds.splits["val"]) == 60
    assert ds.splits["train"].x[0].split()[0] in WORDS["neg"] + WORDS["pos"]
    # stratified validation carve: both classes in it
    assert set(ds.splits["val"].y.tolist()) == {0, 1}


def test_parquet_folder_with_string_labels_and_a_carved_test(saved, tmp_path):
    src = HFSource(str(saved / "parquet"), test_split=None, text_column="sentence",
                   label_column="y")
    ds = load_hf_task("reviews", "text", src, cache_dir=str(tmp_path))
    assert ds.label_names == ["neg", "pos"]
    assert len(ds.splits["train"]) + len(ds.splits["val"]) + len(ds.splits["test"]) == 60


def test_images_decoded_and_cached_once(saved, tmp_path):
    from trainables.data import cache

    src = HFSource(str(saved / "images"), test_split=None, image_column="img")
    ds = load_hf_task("shapes", "image", src, cache_dir=str(tmp_path))
    assert ds.splits["train"].x.shape[1:] == (3, 32, 32) and ds.splits["train"].x.dtype == np.uint8
    load_hf_task("shapes", "image", src, cache_dir=str(tmp_path))
    assert len(cache.builds("hf", str(tmp_path))) == 1


@pytest.mark.parametrize("src,message", [
    (dict(text_column="text", label_column="y"),
     "has no column 'text' (text_column); its columns are ['sentence', 'y']"),
    (dict(text_column="sentence", label_column="label"), "no column 'label' (label_column)"),
    (dict(text_column="sentence", label_column="y", test_split="validation"),
     "no split 'validation' for test_split; it has ['test', 'train']"),
    (dict(text_column="sentence", label_column="y", train_split="training"),
     "no split 'training' for train_split"),
])
def test_bad_declarations_name_the_data_set_and_the_problem(saved, tmp_path, src, message):
    with pytest.raises(DataError, match="hf=.*saved'.*" + message.replace("(", r"\(").replace(
            ")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        load_hf_task("t", "text", HFSource(str(saved / "saved"), **src), cache_dir=str(tmp_path))


def test_a_label_column_with_too_many_values_and_an_offline_hub_name(saved, tmp_path,
                                                                     monkeypatch):
    with pytest.raises(DataError, match="has 1500 distinct values; that is not a set of classes"):
        load_hf_task("t", "text", HFSource(str(saved / "ids"), text_column="sentence",
                                           label_column="y"), cache_dir=str(tmp_path))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="hf='someone/reviews': no such local folder, and the "
                                        "machine is offline.*save_to_disk"):
        load_hf_task("t", "text", HFSource("someone/reviews"), cache_dir=str(tmp_path))


def test_a_trial_runs_on_a_hub_style_task(saved, syn_dir, tmp_path):
    from tests.conftest import TEXT_OPTS
    from trainables.config import MetaConfig
    from trainables.meta import MetaTrial
    from trainables.tasks import trial_settings

    settings = trial_settings(
        ["reviews"], str(syn_dir), {"reviews": {**TEXT_OPTS, "max_length": 16}},
        {"reviews": {"type": "text", "hf": str(saved / "saved"), "text_column": "sentence",
                     "label_column": "y"}}, max_units=2, cache_dir=str(tmp_path))
    trial = MetaTrial(MetaConfig(lr_scale=1.0), settings)
    reports = [trial.run_unit() for _ in range(2)]
    assert 0.0 <= reports[-1]["reviews/val_acc"] <= 1.0
    assert trial.tasks["reviews"].dataset.label_names == ["neg", "pos"]


def test_data_check_reports_a_declared_hub_task(saved, syn_dir, tmp_path, capsys):
    from tune_jobs.cli.main import main

    config = tmp_path / "spec.yaml"
    config.write_text(f"custom_tasks:\n  reviews: {{type: text, hf: {saved / 'saved'}, "
                      "text_column: sentence, label_column: y}\n"
                      f"  broken: {{type: text, hf: {saved / 'saved'}}}\n")
    code = main(["data", "check", "--dir", str(syn_dir), "--config", str(config)])
    out = capsys.readouterr().out
    assert "reviews" in out and "present  hf" in out and "2 classes" in out
    assert f"Hugging Face {saved / 'saved'}" in out
    assert "broken" in out and "MISSING" in out and "no column 'text'" in out
    assert code == 1  # something declared is broken
