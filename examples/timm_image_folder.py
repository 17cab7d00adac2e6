"""The worked example of docs/image-folder.md: an image folder and a timm teacher in timm's own
checkpoint format, made here without a download.

    python examples/timm_image_folder.py make-folder --out data/digits32 --size 32
    python examples/timm_image_folder.py train-teacher --folder data/digits32 --model resnet10t \
        --image-size 32 --epochs 5 --out runs/teacher

``make-folder`` writes scikit-learn's handwritten digits (the same fixed stratified 80/20 split
as ``--dataset digits``) as RGB PNGs in ``train/<class>/`` and ``test/<class>/``, upscaled to
``--size`` pixels (bicubic). ``train-teacher`` trains a timm model on such a folder as timm's
``train.py`` does at small scale: timm's transforms from ``resolve_data_config``, AdamW from
``timm.optim``, an EMA copy (``timm.utils.ModelEmaV3``), and ``timm.utils.CheckpointSaver``
writing ``last.pth.tar`` = ``{'state_dict', 'state_dict_ema', 'arch', 'args', 'epoch', ...}``.
On a real folder, use timm's ``train.py`` itself; its checkpoint loads the same way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F


def write_digits_folder(out: Path, size: int = 64, per_class: Optional[int] = None, classes: Optional[Sequence[int]] = None) -> Path:
    """Write the digits as ``out/{train,test}/<digit>/<index>.png`` (RGB, ``size`` px); returns ``out``.

    ``per_class`` keeps the first that many images of each class and split (small test folders);
    ``classes`` keeps only those digits.
    """
    from PIL import Image

    from vs_plugin.data import load_dataset

    bundle = load_dataset("digits")
    train_raw, test_raw = bundle.raw_images
    splits = {"train": (train_raw, bundle.train.tensors[1]), "test": (test_raw, bundle.test.tensors[1])}
    wanted = set(range(10) if classes is None else classes)
    for split, (images, labels) in splits.items():
        counts: dict[int, int] = {}
        for index, (image, label) in enumerate(zip(images, labels.tolist())):
            if label not in wanted or (per_class is not None and counts.get(label, 0) >= per_class):
                continue
            counts[label] = counts.get(label, 0) + 1
            folder = out / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            grey = Image.fromarray(image[0].numpy(), mode="L").resize((size, size), Image.BICUBIC)
            grey.convert("RGB").save(folder / f"{index:04d}.png")
    return out


def train_teacher(
    folder: Path,
    model_name: str,
    out: Path,
    *,
    image_size: Optional[int] = None,
    epochs: int = 6,
    batch_size: int = 64,
    lr: float = 2e-3,
    ema_decay: float = 0.998,
    hflip: float = 0.0,
    crop_scale_min: float = 0.5,
    seed: int = 0,
) -> Path:
    """Train ``model_name`` on ``folder/train`` with timm's pieces; returns the path of ``last.pth.tar``."""
    import timm
    from timm.data import create_transform, resolve_data_config
    from timm.optim import create_optimizer_v2
    from timm.utils import CheckpointSaver, ModelEmaV3
    from torchvision.datasets import ImageFolder

    torch.manual_seed(seed)
    classes = sorted(p.name for p in (folder / "train").iterdir() if p.is_dir())
    model = timm.create_model(model_name, num_classes=len(classes))
    config = resolve_data_config({"input_size": (3, image_size, image_size)} if image_size else {}, model=model)
    train_set = ImageFolder(str(folder / "train"), transform=create_transform(
        **config, is_training=True, hflip=hflip, scale=(crop_scale_min, 1.0)))
    test_set = ImageFolder(str(folder / "test"), transform=create_transform(**config))
    loader = torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=len(train_set) > batch_size)
    optimizer = create_optimizer_v2(model, opt="adamw", lr=lr, weight_decay=0.05)
    ema = ModelEmaV3(model, decay=ema_decay, use_warmup=True)  # warm-up: short runs get a useful EMA
    out.mkdir(parents=True, exist_ok=True)
    args = argparse.Namespace(model=model_name, input_size=list(config["input_size"]), epochs=epochs, lr=lr)
    saver = CheckpointSaver(model, optimizer, args=args, model_ema=ema, checkpoint_dir=str(out), recovery_dir=str(out), max_history=1)
    step = 0
    for epoch in range(epochs):
        model.train()
        for images, labels in loader:
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            ema.update(model, step=step)
        accuracy = _accuracy(ema.module, test_set)
        print(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}, EMA top-1 {100 * accuracy:.2f}%", flush=True)
        saver.save_checkpoint(epoch, metric=accuracy)
    return out / "last.pth.tar"


@torch.no_grad()
def _accuracy(model: torch.nn.Module, dataset) -> float:
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=256)
    correct = sum(int((model(x).argmax(-1) == y).sum()) for x, y in loader)
    return correct / len(dataset)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("make-folder", help="write the digits as an RGB PNG image folder")
    make.add_argument("--out", type=Path, required=True)
    make.add_argument("--size", type=int, default=64)
    make.add_argument("--per-class", type=int)
    train = commands.add_parser("train-teacher", help="train a timm model on an image folder, saving timm checkpoints")
    train.add_argument("--folder", type=Path, required=True)
    train.add_argument("--model", default="resnet10t")
    train.add_argument("--out", type=Path, required=True)
    train.add_argument("--image-size", type=int)
    train.add_argument("--epochs", type=int, default=6)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--lr", type=float, default=2e-3)
    args = parser.parse_args(argv)
    if args.command == "make-folder":
        print(write_digits_folder(args.out, args.size, args.per_class))
    else:
        path = train_teacher(args.folder, args.model, args.out, image_size=args.image_size, epochs=args.epochs,
                             batch_size=args.batch_size, lr=args.lr)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
