"""The residual stream's statistics read from metrics.jsonl and drawn."""

from __future__ import annotations

from ancre.viz.canvas import save_figure
from ancre.viz.streamplots import stream_depth_figure, stream_stats, stream_training_figure


def stats_record(step: int, layers: int = 3) -> dict:
    return {
        "step": step,
        "tokens": 64 * step,
        "block_stats": {
            "state_rms": [0.02 * 2**i for i in range(layers + 1)],
            "update_ratio": [0.5 / (j + 1) for j in range(layers)],
            "final_share": [0.4] + [0.6 / layers] * layers,
            "bf16_rounding": [1e-3 * (j + 1) for j in range(layers)],
        },
    }


def test_statistics_are_read_by_step_and_odd_records_left_out():
    records = [
        {"step": 0, "loss": 5.0},
        stats_record(10),
        {"step": 20, "block_stats": "torn"},
        {"step": 20, "block_stats": {"state_rms": ["x"]}},
        stats_record(0),
        stats_record(10),  # a rewound and resumed run wrote step 10 again: the last wins
    ]
    stats = stream_stats(records)
    assert [s.step for s in stats] == [0, 10]
    assert stats[1].values["final_share"] == stats_record(10)["block_stats"]["final_share"]


def test_figures_draw_the_statistics(tmp_path):
    stats = stream_stats([stats_record(step) for step in (0, 50, 100)])
    depth = stream_depth_figure(stats, "r")
    rms_axis = depth.axes[0]
    assert rms_axis.get_yscale() == "log"
    assert len(rms_axis.get_lines()) == 3  # steps 0, 50 and 100
    assert all(len(line.get_xdata()) == 4 for line in rms_axis.get_lines())  # h_0 .. h_3
    share_axis = depth.axes[2]
    assert list(share_axis.get_lines()[0].get_xdata()) == [-1, 0, 1, 2]  # embeddings first
    training = stream_training_figure(stats)
    for figure, name in ((depth, "depth"), (training, "training")):
        paths = save_figure(figure, tmp_path, name)
        assert paths[0].stat().st_size > 1000
