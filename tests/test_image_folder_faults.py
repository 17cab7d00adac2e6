"""A damaged file in an image folder is skipped before training, with a warning naming it and a count."""

import json

import numpy as np
import pytest
from PIL import Image

from vs_plugin.cli.main import main
from vs_plugin.data import load_dataset
from vs_plugin.errors import DataError


def image_folder(root, per_class=6):
    rng = np.random.RandomState(0)
    for split, count in (("train", per_class), ("test", 2)):
        for label in ("cat", "dog"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = rng.randint(0, 255, (8, 8, 3)).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


def test_corrupt_and_truncated_images_are_skipped_and_named(tmp_path, capsys):
    root = image_folder(tmp_path / "images")
    (root / "train" / "cat" / "broken.png").write_bytes(b"not an image at all")
    whole = (root / "train" / "dog" / "0.png").read_bytes()
    (root / "train" / "dog" / "cut.png").write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable file\(s\) in the train split: .*broken\.png.*cut\.png"):
        code = main(["compress", "--dataset", f"folder:{root}", "--image-size", "8", "--teacher", "mlp:in-16-out",
                     "--student", "mlp:in-8-out", "--teacher-epochs", "1", "--epochs", "1", "--quiet", "--out", str(out)])
    assert code == 0
    assert json.loads((out / "report.json").read_text())["dataset"]["train_samples"] == 12


def test_a_split_without_any_readable_image_is_an_error(tmp_path):
    root = image_folder(tmp_path / "images", per_class=1)
    for path in (root / "test").rglob("*.png"):
        path.write_bytes(b"garbage")
    with pytest.raises(DataError, match="no file of the test split"):
        load_dataset(f"folder:{root}", None, image_size=8)
