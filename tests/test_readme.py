"""The README as a user reads it: every Python block runs as written, and its commands parse.

Blocks that need the user's own models and data get a prelude defining what the README says the
user brings (``teacher``, ``student``, ``train_set``, ``test_set``, ``train_loader``): small
MLPs and the scikit-learn digits, so the blocks run in seconds.
"""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from sklearn.datasets import load_digits

from vs_plugin.cli.main import build_parser
from vs_plugin.metrics import evaluate_accuracy

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README.read_text(encoding="utf-8")) if lang == language]


PYTHON_BLOCKS = blocks("python")


def mlp(*widths: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: these tiny models gain nothing from more, and lose 10-25x on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def user_things(one_thread):
    """What the README says the user brings: a trained teacher, a student module, the data."""
    torch.manual_seed(0)
    digits = load_digits()
    inputs = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    labels = torch.tensor(digits.target)
    order = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(0))
    train, test = order[:1437], order[1437:]
    train_set = torch.utils.data.TensorDataset(inputs[train], labels[train])
    test_set = torch.utils.data.TensorDataset(inputs[test], labels[test])
    teacher = mlp(64, 256, 256, 10)
    optimizer = torch.optim.Adam(teacher.parameters(), lr=1e-3)
    for _ in range(4):
        for x, y in torch.utils.data.DataLoader(train_set, batch_size=64, shuffle=True):
            loss = nn.functional.cross_entropy(teacher(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    teacher.eval()
    assert evaluate_accuracy(teacher, torch.utils.data.DataLoader(test_set, batch_size=256)) > 0.9
    return teacher, train_set, test_set


def prelude(user_things) -> dict:
    teacher, train_set, test_set = user_things
    torch.manual_seed(0)
    return {
        "teacher": copy.deepcopy(teacher),
        "student": mlp(64, 64, 10),
        "train_set": train_set,
        "test_set": test_set,
        "train_loader": torch.utils.data.DataLoader(train_set, batch_size=64, shuffle=True),
    }


def test_the_readme_has_the_python_examples():
    assert len(PYTHON_BLOCKS) >= 3  # compress, own training loop, NNI pruner


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_python_block_runs_as_written(index, user_things):
    code = PYTHON_BLOCKS[index]
    if "vs_plugin.integrations.nni" in code:
        pytest.importorskip("nni")
    namespace = prelude(user_things)
    exec(compile(code, f"README.md python block {index + 1}", "exec"), namespace)  # noqa: S102 - the README's own code
    test_loader = torch.utils.data.DataLoader(namespace["test_set"], batch_size=256)
    if "report" in namespace:  # vs_plugin.compress
        assert namespace["report"]["student"]["accuracy"] > 0.85
        assert namespace["report"]["student"]["sparsity"] > 0.3
    else:  # the student was trained in place
        student = namespace["student"]
        assert evaluate_accuracy(student, test_loader) > 0.85
        weights = [m.weight for m in student.modules() if isinstance(m, nn.Linear)]
        assert sum(int((w == 0).sum()) for w in weights) > 0.3 * sum(w.numel() for w in weights)


def test_own_loop_example_keeps_the_optimizer_after_variationalize():
    own_loop = next(code for code in PYTHON_BLOCKS if "VariationalStudentObjective" in code)
    assert own_loop.index("variationalize(") < own_loop.index("torch.optim.")
    assert "teacher.eval()" in own_loop and "for epoch in" in own_loop


def command_lines() -> list[str]:
    """Every ``vs-plugin`` command of the README's bash blocks, continuation lines joined."""
    lines = []
    for body in blocks("bash"):
        text = re.sub(r"\\\n\s*", " ", body)
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            for part in re.split(r"&&|;", line):
                if part.strip().startswith("vs-plugin "):
                    lines.append(part.strip())
    return lines


def test_readme_commands_parse():
    """Each command the README shows is accepted by the parser (none piped into another)."""
    commands = command_lines()
    assert len(commands) >= 8
    parser = build_parser()
    for command in commands:
        assert "|" not in command, f"the README pipes one command into another: {command}"
        words = shlex.split(command)[1:]
        if "..." in words:
            continue  # an elided example ("compress ... --resume")
        parser.parse_args(words)


def readme_text() -> str:
    return " ".join(README.read_text(encoding="utf-8").split())


def test_readme_says_what_to_do_when_the_output_folder_holds_a_run(tmp_path):
    """The README quotes the error a second run of command 1 stops with, and names the ways out."""
    from vs_plugin.errors import VSPluginError
    from vs_plugin.pipeline.outputs import RunDirectory

    (tmp_path / "report.json").write_text("{}")
    with pytest.raises(VSPluginError) as error:
        RunDirectory(tmp_path)
    quoted = re.search(r"already holds a run", str(error.value))
    assert quoted is not None
    text = readme_text()
    around = text[text.index(quoted.group(0)) - 300: text.index(quoted.group(0)) + 300]
    assert "--resume" in around and "--overwrite" in around


def test_readme_says_where_tune_writes_and_what_its_default_metric_is():
    pytest.importorskip("nni")
    from vs_plugin.integrations.nni.experiment import load_experiment_config

    config = load_experiment_config(README.parent / "configs" / "tune-digits.yml")
    text = readme_text()
    assert f"`{config.experiment_working_directory}/" in text  # NNI's default working directory
    assert "`default`" in text and "--min-compression" in text and "--work-dir" in text
