from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from trainables.data.cifar import load_cifar
from trainables.data.newsgroups import load_newsgroups
from trainables.data.synthetic import write_all, write_newsgroups


def test_deterministic_for_a_seed(tmp_path, syn_dir):
    write_all(tmp_path / "again", seed=0)
    (tmp_path / "other").mkdir()
    write_newsgroups(tmp_path / "other", seed=1)
    same = load_newsgroups(tmp_path / "again").fingerprint()
    assert same == load_newsgroups(syn_dir).fingerprint()
    assert load_cifar(tmp_path / "again", "cifar10").fingerprint() == \
        load_cifar(syn_dir, "cifar10").fingerprint()
    assert load_newsgroups(tmp_path / "other").fingerprint() != same


def test_text_is_learnable_but_not_trivial(syn_dir):
    ds = load_newsgroups(syn_dir)
    vec = TfidfVectorizer()
    x = vec.fit_transform(ds.splits["train"].x)
    model = LogisticRegression(max_iter=300).fit(x, ds.splits["train"].y)
    acc = model.score(vec.transform(ds.splits["test"].x), ds.splits["test"].y)
    assert 0.3 < acc < 0.97  # chance is 0.05


def test_images_not_linearly_trivial(syn_dir):
    ds = load_cifar(syn_dir, "cifar10")
    tr, te = ds.splits["train"], ds.splits["test"]
    flat = lambda s: s.x.reshape(len(s.y), -1)[:, ::4] / 255.0  # noqa: E731
    model = LogisticRegression(max_iter=200).fit(flat(tr), tr.y)
    assert model.score(flat(te), te.y) < 0.6  # a linear model on raw pixels stays far from 100 %
