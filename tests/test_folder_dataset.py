"""The folder dataset (datasets/custom.py): layout, classes, split with an unlabelled part, and every check on load."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import run_all
from defectseg.datasets import available_datasets, get_dataset
from defectseg.datasets.base import NO_MASK, UNLABELED, DatasetError
from defectseg.datasets.cache import load_arrays
from defectseg.datasets.custom import CustomDataset
from defectseg.datasets.splits import make_split
from defectseg.datasets.write_folder import write_folder
from defectseg.benchmarks.engine.run_data import labelled_masks

CLASSES = "classes: {background: 0, scratch: 1, pit: 2}\n"


def make_folder(root: Path, labelled: int = 12, unlabelled: int = 5, test: int = 0, declaration: str = CLASSES) -> Path:
    """``root/parts``: grey 30x20 images; labelled/test image i has a 6x6 square of class 1 + i % 2 (index masks)."""
    folder = root / "parts"
    for part, count in (("labelled", labelled), ("unlabelled", unlabelled), ("test", test)):
        for i in range(count):
            mask = np.zeros((20, 30), np.uint8)
            mask[4:10, 5:11] = 1 + i % 2
            write(folder / part / "images" / f"{part[0]}{i:02d}.png", np.full((20, 30), 100, np.uint8) + 60 * (mask > 0).astype(np.uint8))
            if part != "unlabelled":
                write(folder / part / "masks" / f"{part[0]}{i:02d}.png", mask)
    if declaration:
        (folder / "dataset.yaml").write_text(declaration)
    return folder


def write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def load(root: Path, **options: object) -> CustomDataset:
    return get_dataset("folder", root, path="parts", **options)


def one_line_error(root: Path, match: str, **options: object) -> str:
    """The DatasetError of loading ``root/parts`` and reading its records: one line matching ``match``."""
    with pytest.raises(DatasetError, match=match) as error:
        load(root, **options).records()
    message = str(error.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- layout, classes, split


def test_records_parts_and_split(tmp_path: Path) -> None:
    make_folder(tmp_path, labelled=20, unlabelled=6)
    dataset = load(tmp_path)
    assert dataset.class_names == ("background", "scratch", "pit") and dataset.in_channels == 1
    records = dataset.records()
    assert [r.uid for r in records if r.subset == UNLABELED] == [f"unlabelled/images/u{i:02d}.png" for i in range(6)]
    assert all(r.mask_path is None for r in records if r.subset == UNLABELED)
    assert {r.label for r in records if r.subset == "train"} == {0b011, 0b101}  # background + scratch, background + pit
    image_only = {r.uid for r in records if r.subset == UNLABELED}
    for ratio in (0.5, 1.0):
        split = make_split(dataset, records, 0, ratio)
        assert image_only <= set(split.unlabeled)
        assert not image_only & set(split.labeled + split.val + split.test)
        assert len(split.test) == 4 and len(split.val) == 2  # 20% of 20, then 15% of 16
        labelled = 14 if ratio == 1.0 else 7  # of the 14 left
        assert len(split.labeled) == labelled and len(split.unlabeled) == 6 + 14 - labelled
    assert set(make_split(dataset, records, 0, 0.5).labeled) < set(make_split(dataset, records, 0, 1.0).labeled)  # nested


def test_test_part_is_the_test_set(tmp_path: Path) -> None:
    make_folder(tmp_path, labelled=10, unlabelled=2, test=4)
    dataset = load(tmp_path)
    assert dataset.test_fraction is None
    split = make_split(dataset, dataset.records(), 3, 1.0)
    assert split.test == [f"test/images/t{i:02d}.png" for i in range(4)]
    assert len(split.val) == 2 and len(split.labeled) == 8


def test_too_few_labelled_images(tmp_path: Path) -> None:
    make_folder(tmp_path, labelled=3, unlabelled=0, test=2)  # 15% of 3 rounds to no validation image
    dataset = load(tmp_path)
    with pytest.raises(DatasetError, match="the validation set is empty: too few labelled images"):
        make_split(dataset, dataset.records(), 0, 1.0)


def test_unlabelled_images_have_no_mask_anywhere(tmp_path: Path) -> None:
    """Image-only rows of the cache hold NO_MASK (never a class), and asking for them as labelled is an error."""
    make_folder(tmp_path, labelled=8, unlabelled=3)
    dataset = load(tmp_path)
    records = dataset.records()
    bundle = load_arrays(dataset, records, 16, tmp_path / "cache")
    image_only = [r.uid for r in records if r.subset == UNLABELED]
    assert (bundle.subset(image_only).masks == NO_MASK).all()
    assert bundle.subset(image_only).images.shape == (3, 1, 16, 16)
    labelled = [r.uid for r in records if r.subset == "train"]
    assert labelled_masks(bundle, labelled).max() == 2
    with pytest.raises(DatasetError, match=r"1 image\(s\) without a mask were asked for as labelled.*unlabelled/images/u00.png"):
        labelled_masks(bundle, [*labelled[:2], image_only[0]])
    with pytest.raises(DatasetError, match="u00.png is in the unlabelled part: it has no mask"):
        dataset.read_mask(next(r for r in records if r.subset == UNLABELED))


def test_binary_masks_with_declared_values(tmp_path: Path) -> None:
    """0/255 masks read as background / defect when the classes say so; any image size is resized."""
    folder = make_folder(tmp_path, labelled=8, unlabelled=0, declaration="classes: {background: 0, defect: 255}\n")
    for i, mask_path in enumerate(sorted((folder / "labelled" / "masks").iterdir())):
        size = (30 + i, 20 + 2 * i)
        mask = np.zeros(size[::-1], np.uint8)
        mask[2:6, 3:9] = 255
        write(mask_path, mask)
        write(folder / "labelled" / "images" / mask_path.name, np.full(size[::-1], 90, np.uint8))
    dataset = load(tmp_path)
    record = dataset.records()[3]
    assert set(np.unique(dataset.read_mask(record))) == {0, 1}
    assert dataset.read_mask(record).shape == (26, 33)
    bundle = load_arrays(dataset, dataset.records(), 24, None)
    assert bundle.images.shape == (8, 1, 24, 24) and set(np.unique(bundle.masks)) == {0, 1}


def test_colour_masks_and_colour_images(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    colours = {"background": (0, 0, 0), "rust": (255, 0, 0), "dent": (0, 0, 255)}
    for i in range(8):
        mask = np.zeros((16, 16, 3), np.uint8)
        mask[3:9, 3:9] = colours["rust" if i % 2 else "dent"]
        write(folder / "labelled" / "masks" / f"{i}.png", mask)
        write(folder / "labelled" / "images" / f"{i}.jpg", np.dstack([np.full((16, 16), v, np.uint8) for v in (200, 100, 50)]))
    (folder / "dataset.yaml").write_text('classes: {background: "#000000", rust: [255, 0, 0], dent: "#0000ff"}\n')
    dataset = load(tmp_path)
    assert dataset.in_channels == 3  # from the first image
    records = dataset.records()
    assert dataset.read_image(records[0]).shape == (16, 16, 3)
    assert dataset.read_mask(records[1])[5, 5] == 1 and dataset.read_mask(records[0])[5, 5] == 2


def test_declared_on_the_command_line(tmp_path: Path) -> None:
    """Without dataset.yaml: classes and channels as options, as --set dataset_options.folder.<key>=... gives them."""
    make_folder(tmp_path, labelled=8, unlabelled=0, declaration="")
    with pytest.raises(DatasetError, match="no classes declared for .*parts: add 'classes:' to .*dataset.yaml"):
        load(tmp_path)
    dataset = load(tmp_path, classes="background=0,scratch=1,pit=2", channels=3)
    assert dataset.class_names == ("background", "scratch", "pit") and dataset.in_channels == 3
    assert dataset.read_image(dataset.records()[0]).shape == (20, 30, 3)
    with pytest.raises(DatasetError, match="dataset_options.folder.classes: classes must read name=value"):
        load(tmp_path, classes="background,scratch")


def test_never_available_without_its_path(tmp_path: Path) -> None:
    assert "folder" not in available_datasets(tmp_path)
    with pytest.raises(DatasetError, match="needs the folder of your images: set dataset_options.folder.path"):
        get_dataset("folder", tmp_path)
    with pytest.raises(DatasetError, match=f"folder dataset not found: expected the folder {tmp_path / 'nope'}"):
        get_dataset("folder", tmp_path, path="nope")


def test_write_folder_round_trip(tmp_path: Path) -> None:
    synthetic = get_dataset("synthetic", num_images=20, image_size=32)
    counts = write_folder(synthetic, tmp_path / "parts", unlabelled_fraction=0.25, test_fraction=0.25)
    assert counts == {"labelled": 10, "unlabelled": 5, "test": 5}
    assert not (tmp_path / "parts" / "unlabelled" / "masks").exists()
    dataset = load(tmp_path)
    assert dataset.class_names == synthetic.class_names and dataset.in_channels == 1
    by_stem = {r.uid.rsplit("/", 1)[-1].removesuffix(".png"): r for r in dataset.records()}
    for record in synthetic.records():
        if by_stem[record.uid].subset != UNLABELED:
            assert (dataset.read_mask(by_stem[record.uid]) == synthetic.read_mask(record)).all()
        assert (dataset.read_image(by_stem[record.uid]) == synthetic.read_image(record)).all()
    with pytest.raises(DatasetError, match="is not empty"):
        write_folder(synthetic, tmp_path / "parts")


# ---------------------------------------------------------------- checks on load: one line, naming the file


def test_images_without_masks(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    for i in range(5):
        (folder / "labelled" / "masks" / f"l{i:02d}.png").unlink()
    message = one_line_error(tmp_path, r"5 image\(s\) without a mask")
    assert f"in {folder / 'labelled' / 'masks'}: l00.png, l01.png, l02.png and 2 more" in message


def test_mask_without_image(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    (folder / "labelled" / "images" / "l07.png").unlink()
    message = one_line_error(tmp_path, r"1 mask\(s\) without an image")
    assert f"in {folder / 'labelled' / 'images'}: l07.png" in message


def test_mask_value_outside_the_classes(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    write(folder / "labelled" / "masks" / "l03.png", np.full((20, 30), 7, np.uint8))
    one_line_error(tmp_path, f"mask {folder / 'labelled' / 'masks' / 'l03.png'} has value\\(s\\) 7 that no class has")


def test_mask_colour_outside_the_classes(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, declaration="classes: {background: [0, 0, 0], scratch: [255, 0, 0]}\n")
    for path in (folder / "labelled" / "masks").iterdir():
        mask = np.zeros((20, 30, 3), np.uint8)
        mask[1, 1] = (255, 0, 0)
        write(path, mask)
    mask[5, 5] = (0, 255, 0)
    write(folder / "labelled" / "masks" / "l04.png", mask)
    one_line_error(tmp_path, f"mask {folder / 'labelled' / 'masks' / 'l04.png'} has colour\\(s\\) #00ff00 that no class has")


def test_mask_and_image_sizes_differ(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    write(folder / "labelled" / "masks" / "l02.png", np.zeros((21, 30), np.uint8))
    one_line_error(tmp_path, f"image {folder / 'labelled' / 'images' / 'l02.png'} is 30x20 \\(WxH\\) but its mask .*l02.png is 30x21")


@pytest.mark.parametrize("part", ["labelled/images", "labelled/masks", "unlabelled/images"])
def test_unreadable_file(tmp_path: Path, part: str) -> None:
    folder = make_folder(tmp_path)
    broken = sorted((folder / part).iterdir())[1]
    broken.write_bytes(b"not a png at all")
    one_line_error(tmp_path, f"cannot read (image|mask) {broken}")


def test_empty_file(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    (folder / "unlabelled" / "images" / "u01.png").write_bytes(b"")
    one_line_error(tmp_path, f"image {folder / 'unlabelled' / 'images' / 'u01.png'} is empty \\(0 bytes\\)")


def test_unexpected_file(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    (folder / "labelled" / "images" / "notes.txt").write_text("x")
    (folder / "labelled" / "images" / ".DS_Store").write_text("hidden files are ignored")
    one_line_error(tmp_path, f"unexpected file {folder / 'labelled' / 'images' / 'notes.txt'} among the images")


def test_class_absent_from_labelled_part_warns(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = make_folder(tmp_path, declaration="classes: {background: 0, scratch: 1, pit: 2, crack: 3}\n")
    load(tmp_path).records()
    warning = capsys.readouterr().err.strip()
    assert warning == f"warning: class 'crack' occurs in no mask of {folder / 'labelled' / 'masks'}: no method can learn it"


def test_test_class_absent_from_labelled_part(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, test=2, declaration="classes: {background: 0, scratch: 1, pit: 2, crack: 3}\n")
    mask = np.zeros((20, 30), np.uint8)
    mask[0, 0] = 3
    write(folder / "test" / "masks" / "t01.png", mask)
    one_line_error(tmp_path, f"test mask {folder / 'test' / 'masks' / 't01.png'} holds class\\(es\\) \\['crack'\\] that no mask of")


def test_bad_declaration(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, declaration="classes: {background: 0, scratch: 1}\nchanels: 1\n")
    with pytest.raises(DatasetError, match=f"{folder / 'dataset.yaml'}: unknown key\\(s\\) \\['chanels'\\]"):
        load(tmp_path)
    (folder / "dataset.yaml").write_text("classes: {background: 0, scratch: 0}\n")
    with pytest.raises(DatasetError, match="two classes share a mask value"):
        load(tmp_path)
    (folder / "dataset.yaml").write_text("classes: {background: 0\n  scratch: [1\n")
    with pytest.raises(DatasetError, match=f"{folder / 'dataset.yaml'} is not valid YAML") as error:
        load(tmp_path)
    assert "\n" not in str(error.value)
    (folder / "dataset.yaml").write_text(CLASSES)
    with pytest.raises(DatasetError, match="channels of the folder dataset .* must be 1 \\(grey\\) or 3 \\(colour\\), got 2"):
        load(tmp_path, channels=2)


def test_cli_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Through run_all.py: a bad layout is one line on stderr and exit status 2."""
    folder = make_folder(tmp_path)
    (folder / "labelled" / "masks" / "l00.png").unlink()
    argv = ["train", "--profile", "smoke", "--dataset", "folder", "--ratio", "1", "--method", "supervised",
            "--data-root", str(tmp_path), "--results-dir", str(tmp_path / "results"), "--set", "dataset_options.folder.path=parts"]
    assert run_all.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "l00.png" in err
