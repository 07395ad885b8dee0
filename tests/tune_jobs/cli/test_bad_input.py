"""The bad-input matrix: every case through the CLI gives exit 2, one line naming the file or key,
no traceback, and Ray is never started. In-process (the CLI's `main`), so that thirty cases cost
seconds; `test_e2e` covers the same entry point as separate processes."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tune_jobs.cli.main import main
from tune_jobs.run import pipeline

RECORDING = str(Path(__file__).resolve().parents[3] / "benchmarks" / "recorded" / "standins-a.json")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/metatune-matrix-pwned",))


@pytest.fixture(scope="module")
def files(syn_dir, tmp_path_factory, request):
    """Broken data sets and files, each in the real on-disk format with one thing wrong."""
    root = tmp_path_factory.mktemp("bad")
    f: dict[str, Path] = {}
    rows = "\n".join(f"text {i},{'a' if i % 2 else 'b'}" for i in range(40))
    f["no_label"] = root / "no_label.csv"
    f["no_label"].write_text("text,category\n" + rows)
    f["one_class"] = root / "one_class.csv"
    f["one_class"].write_text(
        "text,label\n" + "\n".join(f"text {i},a" for i in range(40)))
    f["bad_jsonl"] = root / "bad.jsonl"
    f["bad_jsonl"].write_text('{"text": "x", "label": "a"}\n{"text": \n')
    np.savez(f.setdefault("no_y", root / "no_y.npz"), x=np.zeros((10, 32, 32, 3), np.uint8))
    np.savez(f.setdefault("mismatch", root / "mismatch.npz"),
             x=np.zeros((10, 32, 32, 3), np.uint8), y=np.arange(9) % 2)
    images = root / "images"
    for cls in ("cat", "dog"):
        (images / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(images / cls / f"{i}.png")
    (images / "dog" / "notes.png").write_text("not an image")
    f["images"] = images
    f["not_text"] = root / "data.parquet"
    f["not_text"].write_bytes(b"PAR1")
    # built-in data folders, each a copy of the stand-ins with one file broken
    for name in ("truncated_cifar", "evil_cifar", "half_news", "no_cifar100"):
        shutil.copytree(syn_dir, root / name)
        f[name] = root / name
    blob = (syn_dir / "cifar-10-python.tar.gz").read_bytes()
    (root / "truncated_cifar" / "cifar-10-python.tar.gz").write_bytes(blob[: len(blob) // 2])
    buf = io.BytesIO()
    with tarfile.open(syn_dir / "cifar-10-python.tar.gz") as src, \
            tarfile.open(fileobj=buf, mode="w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name.endswith("data_batch_1"):
                data = pickle.dumps(_Evil(), protocol=2)
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    (root / "evil_cifar" / "cifar-10-python.tar.gz").write_bytes(buf.getvalue())
    (root / "half_news" / "20news-bydate.tar.gz").unlink()
    (root / "half_news" / "20news-bydate-train").mkdir()
    (root / "no_cifar100" / "cifar-100-python.tar.gz").unlink()
    shutil.copytree(syn_dir, root / "binary_news")  # extracted as the archive unpacks, one
    f["binary_news"] = root / "binary_news"          # post replaced by binary bytes
    with tarfile.open(syn_dir / "20news-bydate.tar.gz") as tar:
        tar.extractall(root / "binary_news", filter="data")
    (root / "binary_news" / "20news-bydate.tar.gz").unlink()
    post = sorted((root / "binary_news").glob("**/20news-bydate-train/sci.space/*"))[0]
    post.write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    f["binary_post"] = post
    import datasets  # a Hugging Face data set saved locally, as a user would bring one

    hf = datasets.Dataset.from_dict({"sentence": [f"t {i}" for i in range(1200)],
                                     "y": list(range(1200))})
    datasets.DatasetDict({"train": hf, "test": hf}).save_to_disk(str(root / "hf"))
    f["hf"] = root / "hf"
    f["config_yaml"] = root / "broken.yaml"
    f["config_yaml"].write_text("num_samples: 3\nasha: [\n")
    f["config_json"] = root / "broken.json"
    f["config_json"].write_text('{"num_samples": 3,\n "asha": }')
    f["config_tag"] = root / "tag.yaml"
    f["config_tag"].write_text(
        "num_samples: !!python/object/apply:os.system ['touch /tmp/metatune-matrix-pwned']\n")
    f["config_section"] = root / "section.yaml"
    f["config_section"].write_text("asha: 5\n")
    f["config_latin1"] = root / "latin1.yaml"
    f["config_latin1"].write_bytes("name: caf\xe9\n".encode("latin-1"))
    f["config_list"] = root / "list.yaml"
    f["config_list"].write_text("- 1\n- 2\n")
    f["a_file"] = root / "a_file"
    f["a_file"].write_text("x")
    storage = root / "storage"
    from tune_jobs.spec import presets
    from tune_jobs.store import experiment

    spec = presets.build("smoke", overrides={"storage": str(storage), "name": "taken",
                                             "data_dir": str(syn_dir), "data_kind": "synthetic"})
    experiment.save_spec(spec)
    f["storage"] = storage
    spec_text = (storage / "taken" / experiment.SPEC_FILE).read_text()
    (storage / "cut").mkdir()
    (storage / "cut" / experiment.SPEC_FILE).write_text(spec_text[: len(spec_text) // 2])
    (storage / "nospec").mkdir()
    (storage / "nospec" / "tuner.pkl").write_bytes(b"tune's state")
    experiment.save_spec(dataclasses.replace(spec, name="busy"))
    holder = subprocess.Popen(  # another search, writing "busy" for as long as the module runs
        [sys.executable, "-c", "import sys, time\nfrom tune_jobs.store.writer_lock import "
         "writing\nwith writing(sys.argv[1], 'busy'):\n    print('held', flush=True)\n"
         "    time.sleep(3600)", str(storage / "busy")], stdout=subprocess.PIPE, text=True)
    request.addfinalizer(holder.kill)
    assert holder.stdout.readline().strip() == "held"
    f["busy_pid"] = holder.pid
    f["tiny_class"] = root / "tiny_class.csv"
    f["tiny_class"].write_text("text,label\n" + "\n".join(
        f"text {i},{'ab'[i % 2]}" for i in range(40)) + "\nlonely text,c\n")
    f["latin1"] = root / "latin1.csv"
    f["latin1"].write_bytes(("text,label\n" + "\n".join(
        f"caf\xe9 {i},{'ab'[i % 2]}" for i in range(40))).encode("latin-1"))
    f["mostly_empty"] = root / "mostly_empty.csv"
    f["mostly_empty"].write_text("text,label\n" + "\n".join(
        f"{'' if i % 4 else 'x'},{'ab'[i % 2]}" for i in range(40)))
    f["full"] = root / "full"
    f["full"].mkdir()
    (f["full"] / "keep.txt").write_text("mine")
    x = np.random.default_rng(0).random((30, 32, 32, 3))
    x[4, 1, 2, 0] = np.nan
    np.savez(f.setdefault("nan", root / "nan.npz"), x=x, y=np.arange(30) % 3)
    return f


def custom(name: str, kind: str, path: Path | None, **extra: str) -> list[str]:
    decl = ", ".join([f"type: {kind}", *([f"train: {path}"] if path else []),
                      *(f"{k}: {v}" for k, v in extra.items())])
    return ["--set", f"tasks=[{name}]", "--set", f"custom_tasks.{name}={{{decl}}}"]


# (case id, CLI args built from the files, what the one line must name)
CASES = [
    ("custom csv without label", lambda f, d: ["run", "--data", d, *custom("t", "text", f["no_label"])],
     lambda f: [str(f["no_label"]), "missing column(s) ['label']"]),
    ("custom csv one class", lambda f, d: ["run", "--data", d, *custom("t", "text", f["one_class"])],
     lambda f: [str(f["one_class"]), "at least 2 classes"]),
    ("custom jsonl malformed", lambda f, d: ["run", "--data", d, *custom("t", "text", f["bad_jsonl"])],
     lambda f: [f"{f['bad_jsonl']}:2", "invalid JSON"]),
    ("custom text format", lambda f, d: ["run", "--data", d, *custom("t", "text", f["not_text"])],
     lambda f: [str(f["not_text"]), "unsupported text format"]),
    ("npz without y", lambda f, d: ["run", "--data", d, *custom("i", "image", f["no_y"])],
     lambda f: [str(f["no_y"]), "needs arrays 'x' and 'y'"]),
    ("npz x/y lengths", lambda f, d: ["run", "--data", d, *custom("i", "image", f["mismatch"])],
     lambda f: [str(f["mismatch"]), "N = len(y)"]),
    ("image folder non-image", lambda f, d: ["run", "--data", d, *custom("i", "image", f["images"])],
     lambda f: ["notes.png", "unreadable image"]),
    ("custom train missing", lambda f, d: ["run", "--data", d, *custom("t", "text", "/nope.csv")],
     lambda f: ["custom_tasks.t.train='/nope.csv'", "no such file"]),
    ("custom type", lambda f, d: ["run", "--data", d, *custom("t", "audio", f["no_label"])],
     lambda f: ["custom_tasks.t.type='audio'"]),
    ("hf missing column", lambda f, d: ["run", "--data", d, *custom("h", "text", None, hf=f["hf"])],
     lambda f: [f"hf='{f['hf']}'", "no column 'text' (text_column)"]),
    ("hf label not categorical", lambda f, d: ["run", "--data", d, *custom(
        "h", "text", None, hf=f["hf"], text_column="sentence", label_column="y")],
     lambda f: [f"hf='{f['hf']}'", "1200 distinct values"]),
    ("hf missing split", lambda f, d: ["run", "--data", d, *custom(
        "h", "text", None, hf=f["hf"], text_column="sentence", label_column="y",
        test_split="validation")],
     lambda f: [f"hf='{f['hf']}'", "no split 'validation'"]),
    ("hf unknown name offline", lambda f, d: ["run", "--data", d, *custom(
        "h", "text", None, hf="someone/no-such-set")],
     lambda f: ["hf='someone/no-such-set'", "offline"]),
    ("truncated cifar archive", lambda f, d: ["run", "--data", str(f["truncated_cifar"])],
     lambda f: ["cifar-10-python.tar.gz", "re-download"]),
    ("malicious cifar pickle", lambda f, d: ["run", "--data", str(f["evil_cifar"])],
     lambda f: ["data_batch_1", "refused"]),
    ("half-extracted newsgroups", lambda f, d: ["run", "--data", str(f["half_news"])],
     lambda f: ["20news-bydate-train", "not its other half"]),
    ("newsgroups binary post", lambda f, d: ["run", "--data", str(f["binary_news"])],
     lambda f: [f"sci.space/{f['binary_post'].name}", "not a text post"]),
    ("missing cifar100", lambda f, d: ["run", "--data", str(f["no_cifar100"])],
     lambda f: ["cifar_transfer needs cifar-100-python.tar.gz"]),
    ("unknown model offline", lambda f, d: ["run", "--data", d, "--set",
                                            "task_options.newsgroups.model=no-such/model"],
     lambda f: ["model='no-such/model'", "offline"]),
    ("data folder missing", lambda f, d: ["run", "--data", "/no/such/folder"],
     lambda f: ["--data /no/such/folder", "no such folder"]),
    ("config yaml syntax", lambda f, d: ["run", "--config", str(f["config_yaml"])],
     lambda f: [f"--config {f['config_yaml']}", "line 3, column 1"]),
    ("config json syntax", lambda f, d: ["run", "--config", str(f["config_json"])],
     lambda f: [f"--config {f['config_json']}", "line 2, column 10"]),
    ("config python tag", lambda f, d: ["run", "--config", str(f["config_tag"])],
     lambda f: [f"--config {f['config_tag']}", "invalid YAML"]),
    ("config section type", lambda f, d: ["run", "--config", str(f["config_section"])],
     lambda f: [f"--config {f['config_section']}", "asha=5 is invalid"]),
    ("config encoding", lambda f, d: ["run", "--config", str(f["config_latin1"])],
     lambda f: [f"--config {f['config_latin1']}", "not UTF-8"]),
    ("config not a mapping", lambda f, d: ["run", "--config", str(f["config_list"])],
     lambda f: [f"--config {f['config_list']}", "mapping"]),
    ("config missing", lambda f, d: ["run", "--config", "/no/spec.yaml"],
     lambda f: ["--config /no/spec.yaml", "file not found"]),
    ("set asha=5", lambda f, d: ["run", "--set", "asha=5"], lambda f: ["asha=5 is invalid"]),
    ("set search_seed", lambda f, d: ["run", "--set", "search_seed=abc"],
     lambda f: ["search_seed='abc'"]),
    ("set keep_checkpoints", lambda f, d: ["run", "--set", "keep_checkpoints=0"],
     lambda f: ["keep_checkpoints=0"]),
    ("set max_failures", lambda f, d: ["run", "--set", "max_failures=-5"],
     lambda f: ["max_failures=-5"]),
    ("set max_concurrent", lambda f, d: ["run", "--set", "max_concurrent=1.5"],
     lambda f: ["max_concurrent=1.5"]),
    ("set checkpoint_every", lambda f, d: ["run", "--set", "checkpoint_every=0"],
     lambda f: ["checkpoint_every=0"]),
    ("set feature_cache_limit", lambda f, d: ["run", "--set", "feature_cache_limit=lots"],
     lambda f: ["feature_cache_limit='lots'", "4GB"]),
    ("set head_init", lambda f, d: ["run", "--set", "space.head_init=[probe, linear]"],
     lambda f: ["head_init='linear'", "random", "probe"]),
    ("set final_eval", lambda f, d: ["run", "--set", "final_eval.seeds=-1"],
     lambda f: ["final_eval.seeds=-1"]),
    ("set unknown key", lambda f, d: ["run", "--set", "asha.maxt=4"],
     lambda f: ["'maxt'", "asha"]),
    ("set space bound", lambda f, d: ["run", "--set", "space.dropout={uniform: [0, 2]}"],
     lambda f: ["dropout=2"]),
    ("set device cuda without gpu", lambda f, d: ["run", "--set", "device=cuda"],
     lambda f: ["device='cuda'", "resources.gpu"]),
    ("set without =", lambda f, d: ["run", "--set", "num_samples"],
     lambda f: ["--set 'num_samples'", "key=value"]),
    ("storage is a file", lambda f, d: ["run", "--data", d, "--storage", str(f["a_file"])],
     lambda f: [f"--storage {f['a_file']} is a file"]),
    ("same name other settings", lambda f, d: ["run", "--data", d, "--storage", str(f["storage"]),
                                               "--name", "taken", "--num-samples", "3"],
     lambda f: ["'taken' already exists with different settings", "num_samples"]),
    ("resume missing", lambda f, d: ["resume", "nope", "--storage", str(f["storage"])],
     lambda f: ["no experiment 'nope'", str(f["storage"])]),
    ("best missing", lambda f, d: ["best", "nope", "--storage", str(f["storage"])],
     lambda f: ["no experiment 'nope'"]),
    ("report missing", lambda f, d: ["report", "nope", "--storage", str(f["storage"])],
     lambda f: ["no experiment 'nope'"]),
    ("export missing", lambda f, d: ["export", "nope", "--storage", str(f["storage"]), "--out",
                                     "/tmp/x"], lambda f: ["no experiment 'nope'"]),
    ("export into a non-empty folder", lambda f, d: ["export", "taken", "--storage",
                                                     str(f["storage"]), "--out", str(f["full"])],
     lambda f: [f"--out {f['full']} is not empty", "--force"]),
    ("export to a file", lambda f, d: ["export", "taken", "--storage", str(f["storage"]),
                                       "--out", str(f["a_file"])],
     lambda f: [f"--out {f['a_file']} is a file"]),
    ("export into the experiment", lambda f, d: ["export", "taken", "--storage",
                                                 str(f["storage"]), "--out",
                                                 str(f["storage"] / "taken" / "models")],
     lambda f: ["is inside the experiment folder"]),
    ("spec cut short", lambda f, d: ["best", "cut", "--storage", str(f["storage"])],
     lambda f: [str(f["storage"] / "cut" / "metatune_spec.json"), "is damaged", "--name"]),
    ("spec deleted", lambda f, d: ["status", "nospec", "--storage", str(f["storage"])],
     lambda f: [f"{f['storage'] / 'nospec'} holds an experiment's trials but no "
                "metatune_spec.json", "run --name nospec"]),
    ("npz with NaN", lambda f, d: ["run", "--data", d, *custom("i", "image", f["nan"])],
     lambda f: [str(f["nan"]), "non-finite", "(4, 1, 2, 0)"]),
    ("warm start missing", lambda f, d: ["run", "--data", d, "--storage", str(f["storage"]),
                                         "--warm-start", "nope"],
     lambda f: ["--warm-start nope", "no experiment 'nope'"]),
    ("warm start no trials", lambda f, d: ["run", "--data", d, "--storage", str(f["storage"]),
                                           "--name", "other", "--warm-start", "taken"],
     lambda f: ["--warm-start taken", "no finished trial"]),
    ("set warm_start.space", lambda f, d: ["run", "--set", "warm_start.space=sphere"],
     lambda f: ["warm_start.space='sphere'"]),
    ("set reference", lambda f, d: ["run", "--set", "task_options.newsgroups.reference=best"],
     lambda f: ["newsgroups.reference='best'"]),
    ("custom csv one-example class", lambda f, d: ["run", "--data", d, *custom(
        "t", "text", f["tiny_class"])], lambda f: [str(f["tiny_class"]), "class 'c' has 1 example",
                                                  "need at least 3 examples of every class"]),
    ("custom csv not utf-8", lambda f, d: ["run", "--data", d, *custom("t", "text", f["latin1"])],
     lambda f: [str(f["latin1"]), "not UTF-8", "byte 0xe9"]),
    ("custom csv mostly empty texts", lambda f, d: ["run", "--data", d, *custom(
        "t", "text", f["mostly_empty"])], lambda f: [str(f["mostly_empty"]),
                                                    "30 of 40 texts are empty"]),
    ("tracking uri not a uri", lambda f, d: ["run", "--set", "tracking.mlflow=mlflow-server"],
     lambda f: ["tracking.mlflow='mlflow-server' is invalid: a tracking URI"]),
    ("tracking unknown key", lambda f, d: ["run", "--set", "tracking.wandb=true"],
     lambda f: ["unknown key(s) ['wandb'] in tracking"]),
    ("experiment being written", lambda f, d: ["resume", "busy", "--storage", str(f["storage"])],
     lambda f: ["experiment 'busy' is being written by another metatune search",
                f"pid {f['busy_pid']} on "]),
    ("preset unknown", lambda f, d: ["run", "--preset", "huge"], lambda f: ["--preset 'huge'"]),
    ("set warm_start.method", lambda f, d: ["run", "--set", "warm_start.method=magic"],
     lambda f: ["warm_start.method='magic'", "'top_k', 'rush', 'portfolio'"]),
    ("set metric_aggregate", lambda f, d: ["run", "--set", "metric_aggregate=median"],
     lambda f: ["metric_aggregate='median'", "'rank'"]),
    ("simulate without curves", lambda f, d: ["simulate", "taken", "--storage", str(f["storage"])],
     lambda f: ["no trial recorded a whole unit", "run the search first"]),
    ("simulate unrecorded units", lambda f, d: ["simulate", RECORDING, "--out", str(f["storage"]),
                                                "--set", "asha.max_t=40"],
     lambda f: ["asha.max_t=40 needs units beyond the recorded max_t=27"]),
    ("simulate unknown key", lambda f, d: ["simulate", RECORDING, "--set", "asha.eta=3"],
     lambda f: ["--set asha.eta", "asha.reduction_factor"]),
    ("simulate recording missing", lambda f, d: ["simulate", "/no/recording.json"],
     lambda f: ["recording /no/recording.json: file not found"]),
]


@pytest.mark.parametrize("case,args,names", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_before_ray(case, args, names, files, syn_dir, capsys,
                                                    monkeypatch, tmp_path):
    started = []
    monkeypatch.setattr(pipeline, "init_ray", lambda *a, **k: started.append(a))
    monkeypatch.chdir(tmp_path)  # nothing lands in the repo: default storage is ./results
    code = main(args(files, str(syn_dir)))
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert not started, "Ray was started"
    assert "Traceback" not in err + out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("metatune: error: "), err
    for name in names(files):
        assert name in lines[0], (name, lines[0])
    assert not os.path.exists("/tmp/metatune-matrix-pwned")


def test_the_matrix_is_large_enough():
    assert len(CASES) >= 30
    assert json.dumps([c[0] for c in CASES])  # ids are plain text
