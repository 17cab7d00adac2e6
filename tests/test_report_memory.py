"""The memory line of the summary: the smallest honest storage form, and never "0.9x smaller"."""

import torch
import torch.nn as nn

from vs_plugin.metrics.footprint import model_footprint
from vs_plugin.pipeline.report import build_report, summary_table


def report_for(teacher: nn.Module, student: nn.Module) -> dict:
    return build_report(
        teacher=model_footprint(teacher), teacher_accuracy=0.9, student=model_footprint(student),
        dense_student=model_footprint(student), student_accuracy=0.8, names={"teacher": "t", "student": "s"},
        dataset={}, config={}, history={}, wall_time_s=1.0, device=torch.device("cpu"),
    )


def memory_row(table: str) -> str:
    return next(line for line in table.splitlines() if line.startswith("memory"))


def test_a_dense_student_is_stored_dense_not_as_a_larger_csr():
    teacher = nn.Sequential(nn.Linear(100, 400), nn.Linear(400, 10))
    student = nn.Sequential(nn.Linear(100, 50), nn.Linear(50, 10))  # physically smaller, no zeros
    footprint = model_footprint(student)
    assert footprint.sparse_bytes > footprint.dense_bytes  # CSR costs 6 bytes per non-zero
    report = report_for(teacher, student)
    assert report["student"]["storage_bytes"] == footprint.dense_bytes
    assert report["student"]["storage_format"] == "dense"
    row = memory_row(summary_table(report))
    assert row.split()[-1] == "dense" and "CSR" not in row
    ratio = model_footprint(teacher).dense_bytes / footprint.dense_bytes
    assert f"memory {ratio:.1f}x smaller than the teacher" in summary_table(report)


def test_a_sparse_student_is_stored_as_csr_and_a_mixed_one_says_so():
    teacher = nn.Sequential(nn.Linear(100, 400), nn.Linear(400, 10))
    student = nn.Sequential(nn.Linear(100, 50), nn.Linear(50, 10))
    with torch.no_grad():
        student[0].weight[:, 5:] = 0  # 90% zeros: CSR is smaller for this layer only
    report = report_for(teacher, student)
    layer0, layer1 = model_footprint(student).layers
    assert report["student"]["storage_bytes"] == layer0.csr_bytes + layer1.dense_bytes + 4 * (50 + 10)
    assert report["student"]["storage_format"] == "dense + CSR"
    with torch.no_grad():
        student[1].weight[:, 2:] = 0
    assert report_for(teacher, student)["student"]["storage_format"] == "CSR"


def test_a_student_larger_than_the_teacher_is_called_larger():
    teacher = nn.Sequential(nn.Linear(10, 10))
    student = nn.Sequential(nn.Linear(10, 12))
    table = summary_table(report_for(teacher, student))
    assert "smaller" not in table
    expected = model_footprint(student).dense_bytes / model_footprint(teacher).dense_bytes
    assert f"memory {expected:.1f}x larger than the teacher" in table
