"""Tests of the datasets package: loaders, validation, splits, cache, transforms, registry."""
from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from defectseg.datasets import DATASETS, DatasetError, available_datasets, get_dataset
from defectseg.datasets.base import DATA_ROOT_ENV
from defectseg.datasets.cache import ArrayBundle, load_arrays, read_sample
from defectseg.datasets.dagm import DAGM, parse_labels
from defectseg.datasets.download import EXPECTED_COUNTS, check_counts, main as download_main
from defectseg.datasets.mtiles import MTiles
from defectseg.datasets.neu import NEUSeg
from defectseg.datasets.splits import Split, make_split
from defectseg.datasets.synthetic import SCRATCH, SyntheticDefects
from defectseg.datasets.transforms import random_flip_rot90, to_float
from defectseg.options import ConfigError
from tests.dagm_fixture import make_dagm_fixture

REAL_ROOT = Path(os.environ.get(DATA_ROOT_ENV) or Path(__file__).resolve().parents[1].parent / "shared" / "data")
RATIOS = (0.05, 0.1, 0.3, 0.5, 1.0)


# ---------------------------------------------------------------- tiny fixtures


def write_neu(root: Path, train: int = 3, test: int = 2, size: int = 24) -> Path:
    """A tiny NEU-Seg layout under ``root/NEU_data``; image i has a square of class i % 3 + 1."""
    for folder, count in (("training", train), ("test", test)):
        (root / "NEU_data" / "images" / folder).mkdir(parents=True)
        (root / "NEU_data" / "annotations" / folder).mkdir(parents=True)
        for i in range(count):
            stem = f"{folder[:2]}{i:04d}"
            mask = np.zeros((size, size), np.uint8)
            mask[4:12, 4:12] = i % 3 + 1
            image = np.full((size, size, 3), 120, np.uint8) + 40 * (mask > 0)[..., None].astype(np.uint8)
            Image.fromarray(image).save(root / "NEU_data" / "images" / folder / f"{stem}.jpg")
            Image.fromarray(mask).save(root / "NEU_data" / "annotations" / folder / f"{stem}.png")
    return root / "NEU_data"


def write_mtiles(root: Path, size: int = 20) -> Path:
    """A tiny MTiles layout: one image per class folder, anti-aliased masks (values 0, 100, 255)."""
    for name in ("Blowhole", "Break", "Crack", "Fray", "Uneven", "Free"):
        folder = root / "MTiles_data" / f"MT_{name}" / "Imgs"
        folder.mkdir(parents=True)
        mask = np.zeros((size, size + 3), np.uint8)
        if name != "Free":
            mask[5:9, 5:9], mask[9, 5:9] = 255, 100
        Image.fromarray(np.full(mask.shape, 90, np.uint8)).save(folder / "a.jpg")
        Image.fromarray(mask).save(folder / "a.png")
    return root / "MTiles_data"


@pytest.fixture
def neu_root(tmp_path: Path) -> Path:
    write_neu(tmp_path)
    return tmp_path


def real_root(folder: str) -> Path:
    if not (REAL_ROOT / folder).is_dir():
        pytest.skip(f"real data {REAL_ROOT / folder} not found (set {DATA_ROOT_ENV})")
    return REAL_ROOT


@pytest.fixture(scope="module")
def real_neu() -> NEUSeg:
    return NEUSeg(real_root(NEUSeg.folder))


@pytest.fixture(scope="module")
def synthetic() -> SyntheticDefects:
    return SyntheticDefects(num_images=120, image_size=64, seed=3)


# ---------------------------------------------------------------- registry


def test_registry_names_and_options(neu_root: Path) -> None:
    assert set(DATASETS) == {"neu", "mtiles", "dagm", "synthetic", "folder"}
    assert isinstance(get_dataset("neu", neu_root), NEUSeg)
    assert get_dataset("synthetic", num_images=5).options()["num_images"] == 5
    with pytest.raises(DatasetError, match="valid names: dagm, folder, mtiles, neu, synthetic"):
        get_dataset("kolektor")
    with pytest.raises(ConfigError, match=r"option\(s\) \['size'\] for dataset 'synthetic'; valid options: \['image_size', 'num_images', 'seed'\]"):
        get_dataset("synthetic", size=3)
    with pytest.raises(ConfigError, match=r"valid options: \['include_free'\]"):
        get_dataset("mtiles", neu_root, free=True)
    with pytest.raises(ConfigError, match="option 'num_images' of dataset 'synthetic' must be an integer, got '5'"):
        get_dataset("synthetic", num_images="5")


def test_available_datasets(neu_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert available_datasets(neu_root) == ["neu", "synthetic"]
    make_dagm_fixture(neu_root, images_per_class=1)
    monkeypatch.setenv(DATA_ROOT_ENV, str(neu_root))
    assert available_datasets() == ["neu", "dagm", "synthetic"]


# ---------------------------------------------------------------- missing data, bad layout


@pytest.mark.parametrize("name", ["neu", "mtiles", "dagm"])
def test_missing_dataset_folder(tmp_path: Path, name: str) -> None:
    expected = (tmp_path / DATASETS[name].folder).resolve()
    with pytest.raises(DatasetError) as error:
        get_dataset(name, tmp_path)
    assert str(expected) in str(error.value)
    assert DATA_ROOT_ENV in str(error.value) and "--data-root" in str(error.value)
    assert ("Kaggle" if name == "dagm" else "Run `make data`") in str(error.value)


def test_folder_removed_after_construction(neu_root: Path) -> None:
    dataset = NEUSeg(neu_root)
    (neu_root / "NEU_data").rename(neu_root / "elsewhere")
    with pytest.raises(DatasetError, match="make data"):
        dataset.records()


def test_image_without_mask(neu_root: Path) -> None:
    (neu_root / "NEU_data/annotations/training/tr0001.png").unlink()
    with pytest.raises(DatasetError, match="tr0001.jpg has no mask"):
        NEUSeg(neu_root).records()


def test_empty_image_folder(neu_root: Path) -> None:
    for path in (neu_root / "NEU_data/images/test").iterdir():
        path.unlink()
    with pytest.raises(DatasetError, match=r"no \*\.jpg files in .*images/test"):
        NEUSeg(neu_root).records()


def test_missing_subfolder(neu_root: Path) -> None:
    (neu_root / "NEU_data/annotations/test").rename(neu_root / "moved")
    with pytest.raises(DatasetError, match="missing folder .*annotations/test"):
        NEUSeg(neu_root).records()


# ---------------------------------------------------------------- bad files


def test_corrupt_image(neu_root: Path) -> None:
    dataset = NEUSeg(neu_root)
    record = dataset.records()[0]
    record.image_path.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DatasetError, match=record.image_path.name):
        read_sample(dataset, record)
    with pytest.raises(DatasetError, match=record.image_path.name):
        load_arrays(dataset, [record], 16, None)


def test_truncated_image(neu_root: Path) -> None:
    dataset = NEUSeg(neu_root)
    record = dataset.records()[1]
    record.image_path.write_bytes(record.image_path.read_bytes()[:200])
    with pytest.raises(DatasetError, match=record.image_path.name):
        dataset.read_image(record)


def test_corrupt_mask(neu_root: Path) -> None:
    (neu_root / "NEU_data/annotations/test/te0001.png").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="te0001.png"):
        NEUSeg(neu_root).records()


def test_rgb_mask_rejected(neu_root: Path) -> None:
    Image.new("RGB", (24, 24)).save(neu_root / "NEU_data/annotations/test/te0000.png")
    with pytest.raises(DatasetError, match="te0000.png has image mode 'RGB'"):
        NEUSeg(neu_root).records()


def test_size_mismatch(neu_root: Path) -> None:
    dataset = NEUSeg(neu_root)
    record = dataset.records()[0]
    Image.fromarray(np.zeros((24, 30), np.uint8)).save(record.mask_path)
    with pytest.raises(DatasetError) as error:
        read_sample(dataset, record)
    message = str(error.value)
    assert record.image_path.name in message and record.mask_path.name in message
    assert "24x24" in message and "30x24" in message


def test_label_out_of_range(neu_root: Path) -> None:
    mask = np.zeros((24, 24), np.uint8)
    mask[0, 0], mask[1, 1] = 4, 200
    Image.fromarray(mask).save(neu_root / "NEU_data/annotations/training/tr0002.png")
    with pytest.raises(DatasetError, match=r"tr0002\.png has values \[4, 200\] outside the classes 0\.\.3"):
        NEUSeg(neu_root).records()


# ---------------------------------------------------------------- NEU / MTiles on tiny fixtures


def test_neu_fixture_records(neu_root: Path) -> None:
    dataset = NEUSeg(neu_root)
    records = dataset.records()
    assert [record.uid for record in records] == sorted(record.uid for record in records)
    assert [(r.subset, r.label) for r in records if r.subset == "train"] == [("train", 1), ("train", 2), ("train", 3)]
    image, mask = read_sample(dataset, records[0])
    assert image.shape == (24, 24, 3) and image.dtype == np.uint8
    assert set(np.unique(mask)) == {0, records[0].label}


def test_mtiles_fixture_threshold_and_free(tmp_path: Path) -> None:
    write_mtiles(tmp_path)
    dataset = MTiles(tmp_path)
    records = dataset.records()
    assert [r.label for r in records] == [1, 2, 3, 4, 5] and dataset.num_classes == 6
    for record in records:
        image, mask = read_sample(dataset, record)
        assert image.shape == (20, 23, 1)
        assert set(np.unique(mask)) == {0, record.label} and (mask > 0).sum() == 16  # 100 < 128
    with_free = MTiles(tmp_path, include_free=True)
    free = [r for r in with_free.records() if r.uid.startswith("MT_Free/")]
    assert len(free) == 1 and free[0].label == 0 and not with_free.read_mask(free[0]).any()
    Image.fromarray(np.full((20, 23), 255, np.uint8)).save(free[0].mask_path)
    with pytest.raises(DatasetError, match="MT_Free/Imgs/a.png of a defect-free"):
        with_free.read_mask(free[0])


# ---------------------------------------------------------------- DAGM


@pytest.mark.parametrize("nested", [False, True])
def test_dagm_layouts(tmp_path: Path, nested: bool) -> None:
    make_dagm_fixture(tmp_path, kaggle_nested=nested, images_per_class=3)
    dataset = get_dataset("dagm", tmp_path)
    records = dataset.records()
    assert dataset.num_classes == 7 and dataset.in_channels == 1
    # classes 1..6 only, 2 defect images per upstream split folder, pooled (subset None)
    assert len(records) == 6 * 2 * 2
    assert sorted({r.label for r in records}) == [1, 2, 3, 4, 5, 6]
    assert all(r.uid.startswith(f"Class{r.label}/") and r.subset is None for r in records)
    assert "Class1/Train/0001.PNG" in {r.uid for r in records}
    assert "Class1/Train/0003.PNG" not in {r.uid for r in records}  # defect-free
    for record in records[::5]:
        image, mask = read_sample(dataset, record)
        assert image.shape == (64, 64, 1)
        assert set(np.unique(mask)) == {0, record.label}


def test_dagm_uids_match_across_layouts(tmp_path: Path) -> None:
    make_dagm_fixture(tmp_path / "a", images_per_class=2)
    make_dagm_fixture(tmp_path / "b", kaggle_nested=True, images_per_class=2)
    uids = [[r.uid for r in DAGM(tmp_path / name).records()] for name in "ab"]
    assert uids[0] == uids[1]


def test_dagm_labels_txt_parsing(tmp_path: Path) -> None:
    labels = tmp_path / "Labels.txt"
    labels.write_text("1\n1\t0\t0001.PNG\t0\t0\n2 1 0002.PNG 0 0002_label.PNG\n\n")
    rows = parse_labels(labels)
    assert [(r.image, r.defective, r.mask) for r in rows] == [("0001.PNG", False, None), ("0002.PNG", True, "0002_label.PNG")]
    labels.write_text("1\n1\t1\t0001.PNG\t0\t0\n")  # defective without a mask file
    with pytest.raises(DatasetError, match="Labels.txt line 2"):
        parse_labels(labels)
    labels.write_text("1\n")
    with pytest.raises(DatasetError, match="Labels.txt lists no images"):
        parse_labels(labels)


def test_dagm_bad_layout(tmp_path: Path) -> None:
    (tmp_path / "DAGM_data" / "something").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no DAGM class folders"):
        DAGM(tmp_path).records()
    make_dagm_fixture(tmp_path, images_per_class=2)
    (tmp_path / "DAGM_data/Class2/Test/Label/0001_label.PNG").unlink()
    with pytest.raises(DatasetError, match="Class2/Test/0001.PNG has no mask"):
        DAGM(tmp_path).records()


# ---------------------------------------------------------------- synthetic


def test_synthetic_deterministic(synthetic: SyntheticDefects) -> None:
    again = SyntheticDefects(num_images=120, image_size=64, seed=3)
    other = SyntheticDefects(num_images=120, image_size=64, seed=4)
    records = synthetic.records()
    assert records == again.records()
    assert [r.label for r in records] != [r.label for r in other.records()]
    for record in records[:10]:
        np.testing.assert_array_equal(synthetic.read_image(record), again.read_image(record))
        np.testing.assert_array_equal(synthetic.read_mask(record), again.read_mask(record))
    assert any(not np.array_equal(synthetic.read_image(r), other.read_image(r)) for r in records[:3])


def test_synthetic_content(synthetic: SyntheticDefects) -> None:
    records = synthetic.records()
    labels = [r.label for r in records]
    assert {1, 2, 3} <= set(labels) and 0 < labels.count(0) < len(labels) // 4
    halved = load_arrays(synthetic, records, 32, None)  # the size ratio the quick profile trains at
    for record, small_mask in zip(records, halved.masks):
        image, mask = read_sample(synthetic, record)
        assert image.shape == (64, 64, 1) and image.dtype == mask.dtype == np.uint8
        assert set(np.unique(mask)) == ({0} if record.label == 0 else {0, record.label})
        assert set(np.unique(small_mask)) == set(np.unique(mask))  # no defect lost by halving
        if record.label:  # enough defect pixels, each class with its own polarity, clearly visible
            assert (mask > 0).mean() > 0.005
            contrast = image[mask > 0].mean() - image[mask == 0].mean()
            assert (contrast > 20) if record.label == SCRATCH else (contrast < -20)
    with pytest.raises(DatasetError):
        SyntheticDefects(num_images=0)


def test_synthetic_generation_is_fast() -> None:
    dataset = SyntheticDefects()  # 300 images of 128x128
    start = time.perf_counter()
    for record in dataset.records():
        dataset.read_image(record)
    assert time.perf_counter() - start < 5.0  # ~0.3 s unloaded; slack for a busy machine


# ---------------------------------------------------------------- splits


def check_split(split: Split, records: list) -> None:
    parts = [set(split.labeled), set(split.unlabeled), set(split.val), set(split.test)]
    assert sum(map(len, parts)) == len(set().union(*parts)) == len(records)  # disjoint, complete


def test_split_deterministic_and_nested(synthetic: SyntheticDefects) -> None:
    records = synthetic.records()
    splits = [make_split(synthetic, records, 7, ratio) for ratio in RATIOS]
    assert splits[2] == make_split(synthetic, records[::-1], 7, 0.3)
    assert make_split(synthetic, records, 8, 0.3).test != splits[2].test
    for smaller, larger in zip(splits, splits[1:]):
        assert set(smaller.labeled) < set(larger.labeled)
    for split in splits:
        check_split(split, records)
        assert (split.val, split.test) == (splits[0].val, splits[0].test)
    assert splits[-1].unlabeled == [] and len(splits[0].labeled) == round(0.05 * len(splits[-1].labeled))
    assert len(splits[0].test) == round(0.2 * len(records))
    assert len(splits[0].val) == round(0.15 * (len(records) - len(splits[0].test)))


def test_split_is_stratified(synthetic: SyntheticDefects) -> None:
    records = synthetic.records()
    label = {r.uid: r.label for r in records}
    split = make_split(synthetic, records, 0, 0.5)
    for k in range(4):
        in_class = sum(1 for r in records if r.label == k)
        assert abs(sum(label[uid] == k for uid in split.test) - 0.2 * in_class) <= 1


def test_split_bad_ratio(synthetic: SyntheticDefects) -> None:
    for ratio in (0, -0.1, 1.5):
        with pytest.raises(DatasetError, match="ratio"):
            make_split(synthetic, synthetic.records(), 0, ratio)


def test_split_json_round_trip(synthetic: SyntheticDefects, tmp_path: Path) -> None:
    split = make_split(synthetic, synthetic.records(), 1, 0.1)
    path = tmp_path / "splits" / "synthetic.json"
    split.to_json(path)
    assert Split.from_json(path) == split
    assert [p.name for p in path.parent.iterdir()] == ["synthetic.json"]  # no temporary left
    path.write_text("{}")
    with pytest.raises(DatasetError, match="synthetic.json"):
        Split.from_json(path)


def test_split_official_test_on_fixture(tmp_path: Path) -> None:
    write_neu(tmp_path, train=20, test=4)
    dataset = NEUSeg(tmp_path)
    records = dataset.records()
    split = make_split(dataset, records, 0, 0.5)
    assert split.test == [r.uid for r in records if r.subset == "test"]
    assert len(split.val) == 3  # 15% of 20
    check_split(split, records)


def test_split_mtiles_holds_out_20_percent(tmp_path: Path) -> None:
    class Many(SyntheticDefects):  # MTiles' policy applied to a larger record list
        test_fraction, val_fraction = MTiles.test_fraction, MTiles.val_fraction

    dataset = Many(num_images=1000)
    split = make_split(dataset, dataset.records(), 0, 1.0)
    assert len(split.test) == 100 and len(split.val) == 100 and len(split.labeled) == 800


# ---------------------------------------------------------------- cache


def test_cache_round_trip(neu_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = NEUSeg(neu_root)
    records = dataset.records()
    cache = tmp_path / "cache"
    first = load_arrays(dataset, records, 16, cache)
    assert first.images.shape == (5, 3, 16, 16) and first.masks.shape == (5, 16, 16)
    assert first.images.dtype == first.masks.dtype == np.uint8
    assert first.uids == [r.uid for r in records]
    assert len(list(cache.glob("neu_16px_*.npy"))) == 2 and not list(cache.glob(".*"))

    def fail(record):  # the second load must not decode
        raise AssertionError("decoded again")

    monkeypatch.setattr(dataset, "read_image", fail)
    second = load_arrays(dataset, records, 16, cache)
    assert isinstance(second.images, np.memmap) and isinstance(second.masks, np.memmap)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.masks, second.masks)
    monkeypatch.undo()

    os.utime(records[0].mask_path, ns=(0, 0))  # a changed file changes the key
    load_arrays(dataset, records, 16, cache)
    assert len(list(cache.glob("neu_16px_*.npy"))) == 4


def test_cache_without_dir_and_subset(synthetic: SyntheticDefects) -> None:
    records = synthetic.records()[:6]
    bundle = load_arrays(synthetic, records, 32, None, n_jobs=2)
    assert isinstance(bundle, ArrayBundle) and bundle.images.shape == (6, 1, 32, 32)
    assert not isinstance(bundle.images, np.memmap)
    part = bundle.subset([records[4].uid, records[1].uid])
    np.testing.assert_array_equal(part.images[0], bundle.images[4])
    np.testing.assert_array_equal(part.masks[1], bundle.masks[1])
    assert len(part) == 2
    with pytest.raises(DatasetError, match="not in this bundle"):
        bundle.subset(["nope"])


def test_cache_key_depends_on_options(tmp_path: Path) -> None:
    for seed in (0, 1):
        dataset = SyntheticDefects(num_images=4, image_size=32, seed=seed)
        load_arrays(dataset, dataset.records(), 16, tmp_path)
    assert len(list(tmp_path.glob("synthetic_16px_*_images.npy"))) == 2


# ---------------------------------------------------------------- transforms


def test_to_float() -> None:
    images = torch.tensor([0, 255, 51], dtype=torch.uint8).view(1, 3, 1, 1)
    out = to_float(images)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.flatten(), torch.tensor([-1.0, 1.0, -0.6]))


def test_flip_rot90_keeps_alignment() -> None:
    images = torch.randint(0, 256, (32, 2, 8, 8), dtype=torch.uint8)
    masks = (images[:, 0].long() * 7 + images[:, 1].long()) % 5  # a function of the pixel
    generator = torch.Generator().manual_seed(0)
    out_images, out_masks = random_flip_rot90(images, masks, generator)
    assert torch.equal(out_masks, (out_images[:, 0].long() * 7 + out_images[:, 1].long()) % 5)
    assert out_images.shape == images.shape and out_masks.dtype == masks.dtype
    changed = (out_images != images).flatten(1).any(1)
    assert 0 < changed.sum() < 32  # per-sample, not all-or-nothing
    for sample in range(32):  # each output is one of the 8 flips/rotations of its input
        variants = [images[sample].rot90(k, (-2, -1)) for k in range(4)]
        variants += [v.flip(-1) for v in variants]
        assert any(torch.equal(out_images[sample], v) for v in variants)
    again, _ = random_flip_rot90(images, masks, torch.Generator().manual_seed(0))
    assert torch.equal(again, out_images)
    alone, none = random_flip_rot90(images.float())
    assert none is None and alone.dtype == torch.float32
    with pytest.raises(ValueError, match="square"):
        random_flip_rot90(torch.zeros(1, 1, 4, 5))


# ---------------------------------------------------------------- real data (skipped without it)


def test_real_neu(real_neu: NEUSeg) -> None:
    records = real_neu.records()
    subsets = [r.subset for r in records]
    assert subsets.count("train") == 3630 and subsets.count("test") == 840
    assert {r.label for r in records} == {1, 2, 3}
    for record in records[::900]:
        image, mask = read_sample(real_neu, record)
        assert image.shape == (200, 200, 3) and mask.max() <= 3 and record.label in np.unique(mask)


def test_real_neu_split(real_neu: NEUSeg) -> None:
    records = real_neu.records()
    split = make_split(real_neu, records, 0, 0.1)
    assert split.test == sorted(r.uid for r in records if r.subset == "test")
    assert len(split.val) == round(0.15 * 3630)
    assert len(split.labeled) == round(0.1 * (3630 - len(split.val)))
    check_split(split, records)


def test_real_mtiles() -> None:
    root = real_root(MTiles.folder)
    dataset = get_dataset("mtiles", root)
    records = dataset.records()
    assert dataset.num_classes == 6 and dataset.in_channels == 1
    counts = {name: sum(r.label == k for r in records) for k, name in enumerate(dataset.class_names)}
    assert counts == {"background": 0, **{k: v for k, v in EXPECTED_COUNTS["mtiles"].items() if k != "Free"}}
    assert len(MTiles(root, include_free=True).records()) == len(records) + 952
    sample = [records[i] for i in range(0, len(records), 40)]
    bundle = load_arrays(dataset, sample, 64, None)
    assert bundle.images.shape == (len(sample), 1, 64, 64)
    for record, mask in zip(sample, bundle.masks):
        assert set(np.unique(mask)) <= {0, record.label}


def test_real_check_counts_and_from_dir(tmp_path: Path) -> None:
    real_root(NEUSeg.folder), real_root(MTiles.folder)
    assert download_main(["--data-root", str(tmp_path), "--from-dir", str(REAL_ROOT)]) == 0
    assert (tmp_path / "NEU_data").is_symlink() and (tmp_path / "MTiles_data").is_symlink()
    assert check_counts(tmp_path)["neu"] == {"train": 3630, "test": 840}


def test_check_counts_mismatch(tmp_path: Path) -> None:
    write_neu(tmp_path)
    write_mtiles(tmp_path)
    with pytest.raises(DatasetError, match="neu train: 3 images, expected 3630"):
        check_counts(tmp_path)


def test_download_without_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert download_main(["--data-root", str(tmp_path)]) == 1
    message = capsys.readouterr().err
    assert "codeload.github.com/DHW-Master/NEU_Seg" in message and "--from-dir" in message
    assert [path.name for path in tmp_path.iterdir()] == []  # nothing half-written left
