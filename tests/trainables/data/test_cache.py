import multiprocessing as mp
import shutil

import numpy as np

from trainables.data import cache


def _build_in_child(root: str, q) -> None:
    def build():
        return {"a": np.arange(5)}
    out = cache.get_or_build("demo", {"k": 1}, build, root)
    q.put(out["a"].tolist())


def test_second_call_hits_the_cache(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return {"a": np.arange(3), "b": np.ones((2, 2))}

    first = cache.get_or_build("demo", {"k": 1}, build, tmp_path)
    second = cache.get_or_build("demo", {"k": 1}, build, tmp_path)
    other = cache.get_or_build("demo", {"k": 2}, build, tmp_path)
    assert len(calls) == 2  # once for k=1, once for k=2
    assert (first["a"] == second["a"]).all() and other["b"].shape == (2, 2)
    assert len(cache.builds("demo", tmp_path)) == 2


def test_concurrent_processes_build_once(tmp_path):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_build_in_child, args=(str(tmp_path), q)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [q.get(timeout=5) for _ in procs] == [[0, 1, 2, 3, 4]] * 3
    assert len(cache.builds("demo", tmp_path)) == 1


def test_tokenisation_cached_across_calls(syn_dir, tmp_path):
    from trainables.data.newsgroups import load_newsgroups
    from trainables.text import TextOptions, load_tokenizer, tokenize

    ds = load_newsgroups(syn_dir)
    tok = load_tokenizer(ds, TextOptions(model="tiny"), str(tmp_path))
    a = tokenize(ds, tok, 64, str(tmp_path))
    b = tokenize(ds, tok, 64, str(tmp_path))
    assert len(cache.builds("tokens", tmp_path)) == 1
    assert (a["train"][0] == b["train"][0]).all()
    assert len(a["val"][1]) == len(ds.splits["val"]) + 1
    tokenize(ds, tok, 32, str(tmp_path))  # another max length is another entry
    assert len(cache.builds("tokens", tmp_path)) == 2
    # a second tokenizer load reuses the stored vocabulary instead of retraining it
    load_tokenizer(ds, TextOptions(model="tiny"), str(tmp_path))
    assert len(list((tmp_path / "tokenizers").glob("*/tokenizer.json"))) == 1


def test_a_record_is_read_only_while_every_entry_it_used_is_there(tmp_path):
    built = cache.build_once("ns", {"a": 1}, lambda tmp: (tmp / "x").write_text("x"), tmp_path)
    assert str(built.resolve()) in cache.opened()
    cache.write_record("records", "k1", {"answer": 42}, {str(built)}, tmp_path)
    assert cache.read_records("records", ["k1", "k2"], tmp_path) == [{"answer": 42}, None]
    cache.write_record("records", "k1", {"answer": 43}, {str(built)}, tmp_path)  # replaced whole
    assert cache.read_record("records", "k1", tmp_path) == {"answer": 43}
    assert not list((tmp_path / "records").glob(".*"))  # no temporary file left
    shutil.rmtree(built)
    assert cache.read_record("records", "k1", tmp_path) is None
    (tmp_path / "records" / "k3.json").write_text('{"record": {"answer"')  # cut short
    assert cache.read_record("records", "k3", tmp_path) is None
