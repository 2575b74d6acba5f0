"""Image folders (ImageNet layout): the layout's checks, the transforms, worker processes, and
searches whose classifier follows the folder's classes."""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from dnas.data import DatasetError, DatasetNotFoundError, ImageFolderDataModule, ImageTransform
from dnas.data.images import center_box, random_resized_box
from dnas.space import Architecture
from tests.runs import SEARCH_BASE, compose_config

CLASSES = ("cat", "dog", "owl")
GREY = ["data.mean=[0.5]", "data.std=[0.25]"]  # for the one-channel fmnist_mbv2 space


def write_folder(
    root: Path, classes=CLASSES, n_train: int = 6, n_val: int = 3, seed: int = 0
) -> Path:
    """A tiny ImageNet-layout folder: PNG and JPEG images of assorted sizes, one colour per class
    plus noise (so the classes are learnable), one image in a nested directory."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for k, c in enumerate(classes):
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                h, w = int(rng.integers(20, 48)), int(rng.integers(20, 48))
                base = np.array([80 * k, 255 - 80 * k, 128], dtype=np.int16)
                pixels = np.clip(base + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8)
                where = d / "sub" if i == n - 1 else d  # images may sit deeper in a class
                where.mkdir(exist_ok=True)
                Image.fromarray(pixels).save(where / f"{i}.{'png' if i % 2 else 'jpg'}")
            (d / "notes.txt").write_text("not an image: ignored")
    return root


def module(root: Path, **kw) -> ImageFolderDataModule:
    kw = {"image_size": 16, "batch_size": 4, "eval_batch_size": 4, "num_workers": 0, **kw}
    return ImageFolderDataModule(root=root, **kw)


# -- layout ---------------------------------------------------------------------------------------


def test_layout_gives_classes_labels_and_splits(tmp_path):
    dm = module(write_folder(tmp_path / "f"), arch_fraction=0.5)
    dm.check()
    assert dm.num_classes == 3 and dm.class_names == CLASSES
    index = dm.index
    assert len(index.train.files) == 18 and len(index.test.files) == 9
    for i in range(len(index.train.files)):
        path = index.train.path(i)
        assert path.parent.name in (CLASSES[int(index.train.labels[i])], "sub")
        assert path.suffix in (".png", ".jpg")
    assert dm.split_sizes == {"weights": 9, "arch": 9, "val": 9, "test": 9}
    assert dm.input_shape == (3, 16, 16)


def test_limits_and_validation_hold_out(tmp_path):
    dm = module(
        write_folder(tmp_path / "f"),
        arch_fraction=0.5,
        val_fraction=0.25,
        limit_train=12,
        limit_test=4,
    )
    assert dm.split_sizes == {"weights": 5, "arch": 4, "val": 3, "test": 4}
    used = torch.cat([dm.split_indices[s] for s in ("weights", "arch", "val")])
    assert len(set(used.tolist())) == 12


def test_missing_root_and_split_directories_are_named(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"does not exist.*ROOT/train/<class>"):
        module(tmp_path / "nowhere").check()
    root = write_folder(tmp_path / "f")
    (root / "val").rename(root / "validation")
    with pytest.raises(DatasetNotFoundError, match=f"missing directory {root / 'val'}"):
        module(root).num_classes  # noqa: B018  (listing the folder is what fails)


def test_empty_class_is_named(tmp_path):
    root = write_folder(tmp_path / "f")
    for f in (root / "val" / "dog").rglob("*"):
        if f.is_file():
            f.unlink()
    with pytest.raises(DatasetError, match=r"1 class directory has no images \(val/dog\)"):
        module(root).check()


def test_different_class_sets_are_named(tmp_path):
    root = write_folder(tmp_path / "f")
    (root / "val" / "owl").rename(root / "val" / "bird")
    with pytest.raises(DatasetError, match=r"only in train/: owl; only in val/: bird"):
        module(root).check()


def test_a_single_class_is_refused(tmp_path):
    root = write_folder(tmp_path / "f", classes=("cat",))
    with pytest.raises(DatasetError, match="one class"):
        module(root).check()


def test_unreadable_images_are_named_before_training(tmp_path):
    root = write_folder(tmp_path / "f")
    bad = root / "train" / "dog" / "0.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(DatasetError, match=r"1 unreadable image") as e:
        module(root).check()
    assert str(bad) in str(e.value)
    # Without the check the file still fails by name when it is decoded, in a worker too.
    for workers in (0, 2):
        dm = module(root, verify="none", num_workers=workers, batch_size=18, arch_fraction=0.0)
        dm.check()
        with pytest.raises(DatasetError, match=re.escape(str(bad))):
            list(dm.weight_loader())


def test_truncated_image_is_caught_by_decoding(tmp_path):
    root = write_folder(tmp_path / "f")
    png = root / "train" / "cat" / "1.png"
    png.write_bytes(png.read_bytes()[:60])  # header intact, pixel data cut
    module(root, verify="header").check()
    with pytest.raises(DatasetError, match=re.escape(str(png))):
        module(root, verify="decode").check()


# -- transforms -----------------------------------------------------------------------------------


def test_random_resized_box_respects_scale_ratio_and_bounds():
    rng = random.Random(0)
    for _ in range(200):
        w, h = rng.randint(10, 300), rng.randint(10, 300)
        left, top, right, bottom = random_resized_box(w, h, rng, (0.3, 0.9), (0.75, 4 / 3))
        assert 0 <= left < right <= w and 0 <= top < bottom <= h
    # Extreme aspect ratios fall back to the central crop at the nearest allowed ratio.
    assert random_resized_box(1000, 10, random.Random(0), (0.9, 1.0)) == (493, 0, 506, 10)
    assert random_resized_box(64, 48, random.Random(3)) == random_resized_box(
        64, 48, random.Random(3)
    )


def test_center_box_is_the_crop_of_the_resized_shorter_side():
    # 100x50 -> shorter side 32 (= 28 / 0.875) -> centre 28x28, i.e. 43.75 source pixels.
    assert center_box(100, 50, 28, 0.875) == pytest.approx((28.125, 3.125, 71.875, 46.875))


def test_train_crop_has_the_size_and_eval_is_deterministic(tmp_path):
    path = tmp_path / "wide.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (30, 70, 3), dtype=np.uint8)).save(path)
    kw = {"size": 24, "channels": 3, "mean": (0.5,) * 3, "std": (0.25,) * 3}
    train = ImageTransform(**kw, train=True)
    x = train(path, seed=1)
    assert x.shape == (3, 24, 24) and x.dtype == torch.float32
    assert torch.equal(train(path, seed=1), x)
    assert not torch.equal(train(path, seed=2), x)
    evaluate = ImageTransform(**kw, train=False)
    e = evaluate(path, seed=1)
    assert e.shape == (3, 24, 24) and torch.equal(evaluate(path, seed=7), e)
    tiny = tmp_path / "tiny.jpg"
    Image.fromarray(np.full((5, 3), 200, dtype=np.uint8)).save(tiny)
    grey = ImageTransform(24, 1, (0.5,), (0.25,), train=True)(tiny, seed=0)
    assert grey.shape == (1, 24, 24)  # upsampled, converted to one channel
    assert torch.allclose(grey, torch.full_like(grey, (200 / 255 - 0.5) / 0.25), atol=0.05)


def test_transform_arguments_are_checked():
    with pytest.raises(ValueError, match="need 1 value"):
        ImageTransform(16, 1, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2), train=False)
    with pytest.raises(ValueError, match="channels must be 1"):
        ImageTransform(16, 2, (0.5,) * 2, (0.2,) * 2, train=False)
    with pytest.raises(ValueError, match="verify must be one of"):
        ImageFolderDataModule(root="x", verify="sometimes")


# -- loaders --------------------------------------------------------------------------------------


def batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


def test_worker_processes_give_the_same_batches(tmp_path):
    root = write_folder(tmp_path / "f")
    by_workers = {}
    for workers in (0, 2):
        dm = module(root, num_workers=workers, augment=True)
        loader = dm.weight_loader()
        by_workers[workers] = (batches(loader), batches(loader), batches(dm.test_dataloader()))
    (w0, w0_next, t0), (w2, w2_next, t2) = by_workers[0], by_workers[2]
    for a, b in zip(w0 + w0_next + t0, w2 + w2_next + t2):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert len(w0) == 2 and all(x.shape == (4, 3, 16, 16) for x, _ in w0)  # 9 images, drop_last
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(w0, w0_next))  # a new order per epoch
    assert torch.cat([y for _, y in t0]).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # val/ in order


def test_recalibration_and_sample_use_the_eval_transform(tmp_path):
    dm = module(write_folder(tmp_path / "f"), augment=True)
    assert len(list(dm.bn_recalibration_loader(1))) == 1
    first = batches(dm.bn_recalibration_loader(2))
    assert all(
        torch.equal(a[0], b[0]) for a, b in zip(first, batches(dm.bn_recalibration_loader(2)))
    )
    x, y = dm.sample("arch", 5, torch.Generator().manual_seed(0))
    assert x.shape == (5, 3, 16, 16) and y.dtype == torch.int64
    again, _ = dm.sample("arch", 5, torch.Generator().manual_seed(0))
    assert torch.equal(x, again)


def test_two_processes_share_the_test_folder_whole(tmp_path, monkeypatch):
    """Under torch.distributed (two ranks) the 9 test images are served once each over the two
    processes, the short share padded with an uncounted image; ``sample`` is not sharded."""
    from dnas.data import IGNORE_LABEL

    dm = module(write_folder(tmp_path / "f"))
    labels = []
    for rank in (0, 1):
        monkeypatch.setattr("dnas.data.loader._world", lambda rank=rank: (rank, 2))
        got = batches(dm.test_dataloader())
        assert [len(y) for _, y in got] == [4, 1]
        labels.append(torch.cat([y for _, y in got]).tolist())
        x, _ = dm.sample("arch", 5, torch.Generator().manual_seed(0))
        assert x.shape == (5, 3, 16, 16)
    assert labels[1][-1] == IGNORE_LABEL and IGNORE_LABEL not in labels[0]
    assert sorted(labels[0] + labels[1][:-1]) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


# -- configuration, classes and searches ----------------------------------------------------------


def test_config_follows_the_space(tmp_path):
    root = write_folder(tmp_path / "f")
    cfg = compose_config("search", "data=imagefolder", f"data.root={root}")
    assert cfg.space.name == "apq_mbv2" and cfg.data.image_size == 224
    cfg = compose_config("search", "data=imagefolder", f"data.root={root}", "space=cifar_mbv2")
    dm = instantiate(cfg.data)
    assert dm.input_shape == (3, 32, 32) and dm.num_classes == 3


def test_the_space_takes_the_datas_classes_and_a_table_of_its_own(tmp_path):
    from omegaconf import OmegaConf

    from dnas.cli.common import check_data, fit_classes_to_data
    from dnas.cost.hardware import BitFusionConfig
    from dnas.cost.table import default_table_path
    from dnas.space import LayerKey, SearchSpace

    root = write_folder(tmp_path / "f")
    cfg = compose_config(
        "search", "data=imagefolder", f"data.root={root}", "space=fmnist_mbv2", *GREY
    )
    before = SearchSpace.from_dict(OmegaConf.to_container(cfg.space, resolve=True))
    data = instantiate(cfg.data)
    with pytest.raises(ValueError, match="has 3 classes, space 'fmnist_mbv2' a 10-way"):
        check_data(before, data)
    said: list[str] = []
    fit_classes_to_data(cfg, data, said.append)
    assert said == [
        "classes: ImageFolderDataModule has 3, so space fmnist_mbv2 gets a 3-way classifier "
        "(its config says 10)"
    ]
    space = SearchSpace.from_dict(OmegaConf.to_container(cfg.space, resolve=True))
    check_data(space, data)
    classifier = {c.key: c for c in space.costed_layers()}[LayerKey("classifier")]
    assert classifier.out_channels == 3 and classifier.widths == (3,)
    hw = BitFusionConfig()
    assert space.fingerprint() != before.fingerprint()
    assert default_table_path(space, hw) != default_table_path(before, hw)
    fit_classes_to_data(cfg, data, said.append)  # already fitted: nothing more said
    assert len(said) == 1


def test_bad_folder_fails_before_the_cost_table(tmp_path, monkeypatch):
    from dnas.cli.search import run

    monkeypatch.setenv("DNAS_CACHE", str(tmp_path / "cache"))
    root = write_folder(tmp_path / "f")
    (root / "train" / "owl" / "0.jpg").write_bytes(b"")
    cfg = compose_config("search", "data=imagefolder", f"data.root={root}")
    with pytest.raises(DatasetError, match=r"owl/0\.jpg"):
        run(cfg, output_dir=tmp_path / "run")
    assert not (tmp_path / "cache").exists()


def _search(tmp_path, root, *overrides):
    from dnas.cli.search import run

    out = tmp_path / "run"
    base = [o for o in SEARCH_BASE if not o.startswith("data")]
    cfg = compose_config(
        "search",
        *base,
        "data=imagefolder",
        f"data.root={root}",
        "data.val_fraction=0",
        "target.latency_frac=0.5",
        *overrides,
        f"hydra.runtime.output_dir={out}",
    )
    run(cfg, output_dir=out)
    return out


def _classes_reach_the_result(out: Path, space_name: str) -> None:
    import json

    import yaml

    from dnas.cost.hardware import BitFusionConfig
    from dnas.cost.table import load_or_build
    from dnas.space import LayerKey, SearchSpace
    from dnas.train.load import SPACE_FILE

    space = SearchSpace.from_dict(yaml.safe_load((out / SPACE_FILE).read_text()))
    assert space.name == space_name and space.num_classes == 3
    state = torch.load(out / "supernet.pt", weights_only=True)
    heads = [v for k, v in state.items() if k.startswith("classifier") and k.endswith("weight")]
    assert heads and all(w.shape[0] == 3 for w in heads)
    table, _, built = load_or_build(space, BitFusionConfig())
    assert not built  # the search built and cached the 3-class table
    assert table.entries[LayerKey("classifier")].widths == (3,)
    arch = Architecture.load(out / "arch.yaml")
    lat, en = table.arch_cost(space, arch)
    assert arch.metrics["latency_ms"] == pytest.approx(lat, rel=1e-9)
    assert arch.metrics["energy_mj"] == pytest.approx(en, rel=1e-9)
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["space"]["num_classes"] == 3


# A smaller grid (2 kernels, 2 bit-widths) keeps the 3-class table quick to build.
SMALL_GREY_SPACE = [
    "space=fmnist_mbv2",
    "space.kernels=[3,5]",
    "space.bits=[4,8]",
    *GREY,
    "data.num_workers=0",
    "data.batch_size=6",
]


def test_search_on_a_three_class_folder_has_a_three_way_classifier(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DNAS_CACHE", str(tmp_path / "cache"))
    out = _search(tmp_path, write_folder(tmp_path / "f", n_train=8), *SMALL_GREY_SPACE)
    said = " ".join(capsys.readouterr().err.split())  # rich wraps lines
    assert "space fmnist_mbv2 gets a 3-way classifier (its config says 10)" in said
    _classes_reach_the_result(out, "fmnist_mbv2")


@pytest.mark.slow
def test_train_sizes_the_child_to_the_folder(tmp_path, monkeypatch):
    from dnas.cli.train import run as train

    monkeypatch.setenv("DNAS_CACHE", str(tmp_path / "cache"))
    root = write_folder(tmp_path / "f", n_train=8)
    out = _search(tmp_path, root, *SMALL_GREY_SPACE)
    # dnas-train sizes the child to the same folder, so the searched architecture loads.
    trained = tmp_path / "train"
    cfg = compose_config(
        "train",
        "data=imagefolder",
        f"data.root={root}",
        *SMALL_GREY_SPACE,
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "trainer.enable_model_summary=false",
        "train.bn_batches=1",
        f"arch={out}",
    )
    acc = train(cfg, output_dir=trained)
    assert Architecture.load(trained / "arch.yaml").metrics["test_acc"] == acc
    assert torch.load(trained / "model.pt", weights_only=True)["classifier.weight"].shape[0] == 3


@pytest.mark.slow
def test_search_at_224_in_apqs_space(tmp_path, monkeypatch):
    monkeypatch.setenv("DNAS_CACHE", str(tmp_path / "cache"))
    root = write_folder(tmp_path / "f", n_train=4, n_val=1)
    out = _search(
        tmp_path,
        root,
        "space=apq_mbv2",
        "data.batch_size=2",
        "data.eval_batch_size=3",
        "data.limit_train=8",
        "data.num_workers=0",
    )
    _classes_reach_the_result(out, "apq_mbv2")
