import json
import math

from ancre.train.metrics import JsonlSink, MetricsLogger


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
