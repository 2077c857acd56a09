import json
import math

import pytest

from ancre.train.metrics import JsonlSink, MetricsLogger, WandbSink


def test_jsonl_sink_appends_valid_json_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    logger = MetricsLogger([JsonlSink(path)])
    logger.log({"step": 1, "loss": 2.5})
    logger.log({"step": 2, "loss": math.nan, "data_skipped": {"empty": 3}})
    logger.close()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records == [
        {"step": 1, "loss": 2.5},
        {"step": 2, "loss": None, "data_skipped": {"empty": 3}},
    ]


@pytest.mark.slow
def test_wandb_offline_writes_its_run_files(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    sink = WandbSink("offline", "ancre-test", "unit", tmp_path / "wandb", {"train": {"steps": 2}})
    sink.log({"step": 1, "loss": 3.0, "data_skipped": {"empty": 1}})
    sink.close()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))
