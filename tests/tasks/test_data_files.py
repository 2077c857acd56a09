"""A local task's data file with a bad line is refused naming the file and the line."""

from __future__ import annotations

import pytest

from ancre.tasks import TaskError
from ancre.tasks.data_files import TaskDataError, check_data_files
from tests.helpers.local_task import write_task

DOCS = [{"context": "a", "choices": ["b", "c"], "label": 0}] * 3


def test_good_files_pass_and_a_bad_line_is_named(tmp_path):
    folder = write_task(tmp_path / "tasks", DOCS)
    check_data_files(folder)
    data = folder / "docs.jsonl"
    lines = data.read_text().splitlines()
    lines[1] = '{"context": "a", "choices": ['  # torn
    data.write_text("\n".join(lines) + "\n")
    with pytest.raises(TaskDataError, match=rf"{data}:2 \(data_files of .*\.yaml\): not JSON"):
        check_data_files(folder)
    data.write_text('{"context": "a"}\n[1, 2]\n')
    with pytest.raises(TaskDataError, match=r":2 .*a JSON list, not an object"):
        check_data_files(folder)
    data.unlink()
    with pytest.raises(TaskDataError, match="no such file"):
        check_data_files(folder)


def test_the_harness_refuses_it_before_anything_runs(tmp_path):
    pytest.importorskip("lm_eval")
    from ancre.tasks.harness import task_manager

    folder = write_task(tmp_path / "tasks", DOCS)
    (folder / "docs.jsonl").write_text("not json\n")
    with pytest.raises(TaskError, match="docs.jsonl:1"):
        task_manager(["ancre_local_choice"], folder)
