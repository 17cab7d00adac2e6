"""Data given through the Python API is checked and converted: no silent random teacher, no
unchecked test labels, dtypes converted or named, a class count for label-less datasets, NaN
inputs named as such."""

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

import vs_plugin
from vs_plugin.data import load_dataset
from vs_plugin.errors import ConfigError, DataError
from vs_plugin.models.builtin import MLP

FAST = dict(epochs=1, teacher_epochs=1, progress=False, device="cpu", batch_size=128)


@pytest.fixture(scope="module")
def digits():
    bundle = load_dataset("digits")
    return bundle.train.tensors, bundle.test.tensors


def trained_teacher(train):
    teacher = MLP([64, 32, 10])
    optimizer = torch.optim.Adam(teacher.parameters(), lr=1e-2)
    images, labels = train
    for _ in range(30):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(teacher(images), labels).backward()
        optimizer.step()
    return teacher


def test_a_teacher_named_but_never_trained_is_refused(digits):
    (x, y), (tx, ty) = digits
    with pytest.raises(ConfigError, match="train_teacher"):
        vs_plugin.compress("mlp:in-64-out", "mlp:in-32-out", TensorDataset(x, y), TensorDataset(tx, ty), **FAST)
    _, report = vs_plugin.compress("mlp:in-64-out", "mlp:in-32-out", TensorDataset(x, y), TensorDataset(tx, ty), train_teacher=True,
                                   **{**FAST, "teacher_epochs": 5})
    assert report["teacher"]["accuracy"] > 0.5


def test_a_teacher_module_at_chance_is_warned_about(digits):
    (x, y), (tx, ty) = digits
    with pytest.warns(UserWarning, match="chance"):
        vs_plugin.compress(MLP([64, 32, 10]), MLP([64, 16, 10]), TensorDataset(x, y), TensorDataset(tx, ty), **FAST)


def test_test_labels_outside_the_classes_are_an_error(digits):
    (x, y), (tx, ty) = digits
    order = torch.argsort(torch.cat([y, ty]), stable=True)  # a class-sorted split: the test set holds the last classes
    images, labels = torch.cat([x, tx])[order], torch.cat([y, ty])[order]
    cut = int(0.8 * len(labels))
    train, test = TensorDataset(images[:cut], labels[:cut]), TensorDataset(images[cut:], labels[cut:])
    with pytest.raises(DataError, match="test labels"):
        vs_plugin.compress("mlp:in-64-out", "mlp:in-32-out", train, test, train_teacher=True, **FAST)


def test_a_stray_label_does_not_make_a_thousand_class_head(digits):
    (x, y), (tx, ty) = digits
    y = y.clone()
    y[5] = 999
    with pytest.raises(DataError, match="999"):
        vs_plugin.compress("mlp:in-64-out", "mlp:in-32-out", TensorDataset(x, y), TensorDataset(tx, ty), train_teacher=True, **FAST)


@pytest.mark.parametrize("label_dtype", [torch.int32, torch.int16, torch.float32])
@pytest.mark.parametrize("image_dtype", [torch.float64, torch.float16])
def test_label_and_image_dtypes_are_converted(digits, label_dtype, image_dtype):
    (x, y), (tx, ty) = digits
    train = TensorDataset(x.to(image_dtype), y.to(label_dtype))
    test = TensorDataset(tx.to(image_dtype), ty.to(label_dtype))
    _, report = vs_plugin.compress("mlp:in-64-out", "mlp:in-32-out", train, test, train_teacher=True, **FAST)
    assert report["dataset"]["num_classes"] == 10


def test_integer_images_and_fractional_labels_are_named(digits):
    (x, y), (tx, ty) = digits
    with pytest.raises(DataError, match="uint8"):
        vs_plugin.compress("mlp:in-64-out", "mlp:in-32-out", TensorDataset((x * 10).clamp(0, 255).to(torch.uint8), y),
                           TensorDataset(tx, ty), train_teacher=True, **FAST)
    with pytest.raises(DataError, match="whole numbers"):
        vs_plugin.compress("mlp:in-64-out", "mlp:in-32-out", TensorDataset(x, y.float() + 0.5), TensorDataset(tx, ty),
                           train_teacher=True, **FAST)


class NoTargets(Dataset):
    """A dataset that exposes no labels up front (like many user datasets)."""

    def __init__(self, images, labels):
        self.images, self.labels = images.double(), labels.int()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], int(self.labels[index])


def test_a_dataset_without_targets_takes_num_classes(digits):
    (x, y), (tx, ty) = digits
    teacher = trained_teacher((x, y))
    with pytest.raises(DataError, match="num_classes"):
        vs_plugin.compress(teacher, MLP([64, 16, 10]), NoTargets(x, y), NoTargets(tx, ty), **FAST)
    _, report = vs_plugin.compress(teacher, MLP([64, 16, 10]), NoTargets(x, y), NoTargets(tx, ty), num_classes=10, **FAST)
    assert report["dataset"]["num_classes"] == 10 and report["teacher"]["accuracy"] > 0.5


def test_nan_inputs_are_named_as_such(digits):
    (x, y), (tx, ty) = digits
    x = x.clone()
    x[3, 0, 2, 2] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        vs_plugin.compress("mlp:in-64-out", "mlp:in-32-out", TensorDataset(x, y), TensorDataset(tx, ty), train_teacher=True, **FAST)
    with pytest.raises(DataError, match="NaN") as caught:  # data read sample by sample is caught when the loss breaks
        vs_plugin.compress(trained_teacher((tx, ty)), MLP([64, 16, 10]), NoTargets(x, y), NoTargets(tx, ty), num_classes=10, **FAST)
    assert "learning rate" not in str(caught.value)
