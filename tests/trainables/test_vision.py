import json
import multiprocessing as mp

import torch

from tests.conftest import VISION_OPTS, task_for
from trainables.config import MetaConfig, VisionOptions
from trainables.data import cache
from trainables.data.cifar import load_cifar
from trainables.vision import SmallCNN, source_model


def _task(syn_dir, cache_dir, **meta):
    return task_for("cifar_transfer", syn_dir, cache_dir, MetaConfig(**meta))[0]


def test_classic_architecture():
    model = SmallCNN(10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 64]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert model.head.in_features == 64 and model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert SmallCNN(10, width=0.5).conv1[0].out_channels == 16


def test_backbone_transferred_head_fresh(syn_dir, cache_dir):
    task = _task(syn_dir, cache_dir)
    src, _ = source_model(load_cifar(syn_dir, "cifar10"), VisionOptions(**{
        k: v for k, v in VISION_OPTS.items() if k in ("source_steps",)}), cache_dir)
    model = task.learner.model
    assert torch.equal(model.conv1[0].weight.cpu(), src["conv1.0.weight"])
    assert torch.equal(model.fc[1].weight.cpu(), src["fc.1.weight"])
    assert model.head.weight.shape == (100, 64) and src["head.weight"].shape == (10, 64)
    assert not torch.any(model.head.weight)  # fresh zero-initialised head, nothing copied


def test_unfreeze_frac_freezes_lowest_blocks(syn_dir, cache_dir):
    task = _task(syn_dir, cache_dir, unfreeze_frac=0.5)
    model = task.learner.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    task.learner.train_unit()
    assert torch.equal(before["conv1.0.weight"], model.conv1[0].weight)
    assert torch.equal(before["conv2.0.weight"], model.conv2[0].weight)
    assert model.conv1[0].weight.grad is None
    assert not torch.equal(before["conv3.0.weight"], model.conv3[0].weight)
    assert not torch.equal(before["head.weight"], model.head.weight)


def _source_in_child(syn_dir: str, cache_dir: str, q) -> None:
    torch.set_num_threads(1)
    _, info = source_model(load_cifar(syn_dir, "cifar10"), VisionOptions(source_steps=40),
                           cache_dir)
    q.put(info["pid"])


def test_source_pretrained_once_when_trials_start_together(syn_dir, tmp_path):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_source_in_child, args=(str(syn_dir), str(tmp_path), q))
             for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    pids = [q.get(timeout=5) for _ in procs]
    assert len(set(pids)) == 1  # all three got the model the first one built
    assert len(cache.builds("source_cnn", tmp_path)) == 1
    infos = list((tmp_path / "source_cnn").glob("*/info.json"))
    assert len(infos) == 1 and json.loads(infos[0].read_text())["inputs"]["steps"] == 40


def test_cifar10_pretraining_helps_the_cifar100_transfer(syn_dir, cache_dir):
    """The synthetic CIFAR-100 shares its visual primitives with CIFAR-10, as the real ones
    share natural-image statistics: the transferred backbone beats a random one."""
    from trainables.config import TaskBudget
    from trainables.loop import Learner
    from trainables.vision import ImageBatches, _forward, transfer_model

    c10, c100 = load_cifar(syn_dir, "cifar10"), load_cifar(syn_dir, "cifar100")
    source, info = source_model(c10, VisionOptions(source_steps=150), cache_dir)
    cfg = MetaConfig().for_task(TaskBudget(base_lr=2e-3, base_lr_sgd=2e-2, steps_per_unit=60),
                                max_units=1)
    accs = {}
    for name, weights in (("transfer", source), ("scratch", SmallCNN(10).state_dict())):
        model = transfer_model(weights, 100, 1.0, 0.1, seed=0)
        batches = ImageBatches(c100, info["mean"], info["std"], 256, True)
        learner = Learner(model, cfg, len(c100.splits["train"]), batches.train,
                          batches.evaluate, _forward)
        learner.train_unit()
        accs[name] = learner.evaluate("val")["acc"]
    assert accs["transfer"] > 0.05 and accs["transfer"] > 2 * accs["scratch"], accs
