import io
import tarfile

import numpy as np
import pytest

from trainables.data.newsgroups import clean, load_newsgroups
from trainables.data.splits import DataError


def test_reads_archive_with_shapes_and_label_counts(syn_dir):
    ds = load_newsgroups(syn_dir)
    assert ds.num_classes == 20 and ds.source == "synthetic"
    assert len(ds.splits["train"]) + len(ds.splits["val"]) == 20 * 60
    assert len(ds.splits["test"]) == 20 * 20
    assert np.bincount(ds.splits["test"].y, minlength=20).tolist() == [20] * 20
    # the validation split is stratified: every group keeps 6 of its 60 posts
    assert np.bincount(ds.splits["val"].y, minlength=20).tolist() == [6] * 20
    assert ds.label_names[0] == "alt.atheism" and ds.label_names[-1] == "talk.religion.misc"


def test_headers_footers_quotes_removed_by_default(syn_dir):
    stripped = load_newsgroups(syn_dir).splits["test"].x
    raw = load_newsgroups(syn_dir, remove=()).splits["test"].x
    assert all(t.startswith("From:") for t in raw)
    assert any("writes:" in t for t in raw) and any("\n> " in t for t in raw)
    assert any("signature" in t for t in raw)
    for text in stripped:
        assert "From:" not in text and "Subject:" not in text and "Organization:" not in text
        assert "writes:" not in text and not any(line.startswith(">") for line in text.splitlines())
        assert "signature" not in text
        assert len(text.split()) > 10  # the body itself survives


@pytest.mark.parametrize("inside,layout", [
    ("20news-bydate", "folder 20news-bydate/"),
    ("", "extracted 20news-bydate-train/ and -test/"),  # how the official archive unpacks
    ("20news_home", "scikit-learn cache 20news_home/"),
])
def test_every_extracted_layout_gives_the_same_data(inside, layout, syn_dir, tmp_path):
    with tarfile.open(syn_dir / "20news-bydate.tar.gz") as tar:
        tar.extractall(tmp_path / inside, filter="data")
    a, b = load_newsgroups(syn_dir), load_newsgroups(tmp_path)
    assert a.splits["train"].x == b.splits["train"].x
    assert (a.splits["val"].y == b.splits["val"].y).all()
    assert b.meta["layout"] == layout and a.meta["layout"] == "archive 20news-bydate.tar.gz"
    assert b.source == "synthetic"  # the extracted stand-in still carries its inner marker


def test_half_an_extraction_and_an_empty_group_are_named(syn_dir, tmp_path):
    import shutil

    with tarfile.open(syn_dir / "20news-bydate.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    shutil.rmtree(tmp_path / "20news-bydate-test")
    with pytest.raises(DataError, match=r"20news-bydate-train is there but not its other half"):
        load_newsgroups(tmp_path)
    with tarfile.open(syn_dir / "20news-bydate.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    for split in ("train", "test"):  # a group emptied in both splits is not a 19-class task
        for post in (tmp_path / f"20news-bydate-{split}" / "sci.med").iterdir():
            post.unlink()
    with pytest.raises(DataError, match=r"has 20 groups; here the group\(s\) \['sci.med'\] "
                                        r"have no posts"):
        load_newsgroups(tmp_path)


def test_validation_split_is_seeded(syn_dir):
    a, b, c = (load_newsgroups(syn_dir, seed=s) for s in (1, 1, 2))
    assert a.splits["val"].x == b.splits["val"].x
    assert a.splits["val"].x != c.splits["val"].x
    assert a.splits["test"].x == c.splits["test"].x  # the test split never changes


def test_truncated_archive_is_one_clear_error(syn_dir, tmp_path):
    data = (syn_dir / "20news-bydate.tar.gz").read_bytes()
    (tmp_path / "20news-bydate.tar.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="20news-bydate.tar.gz.*(truncated|corrupt|readable)"):
        load_newsgroups(tmp_path)


def test_wrong_layout_is_named(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("somewhere/else.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    (tmp_path / "20news-bydate.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(DataError, match="not a 20news-bydate archive"):
        load_newsgroups(tmp_path)


def test_missing_data_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match="metatune data download"):
        load_newsgroups(tmp_path)


def test_clean_rejects_unknown_part():
    with pytest.raises(ValueError, match="remove='sigs'"):
        clean("x", ("sigs",))


def test_download_fails_fast_offline_and_says_what_to_do(tmp_path, monkeypatch):
    from trainables.data.cifar import download_cifar
    from trainables.data.newsgroups import download_newsgroups

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"offline.*Copy 20news-bydate.tar.gz"):
        download_newsgroups(tmp_path)
    with pytest.raises(DataError, match="offline.*by hand"):
        download_cifar(tmp_path, "cifar10")
