"""`ancre viz` end to end on run folders written in the test, and its errors."""

import json
import shutil

import pytest

from ancre.cli import main
from tests.helpers.report_checks import FIGURES, check_in_chromium, check_report
from tests.helpers.viz_builders import metrics_lines, softmax_matrix


def viz(*args):
    return main(["viz", *[str(a) for a in args]])


def test_report_of_a_run_still_being_written(make_run, tmp_path, capsys):
    matrices = [softmax_matrix(4, seed=k) for k in range(9)]
    run = make_run("r", matrices, partial_line='{"step": 90, "tokens": 1')
    out = tmp_path / "out"
    assert viz(run, "--out", out, "--svg", "--step", 40, "--top-k", 3) == 0
    check_report(out, svg=True)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["shown_step"] == 40
    assert summary["runs"][0]["blocks L"] == 4 and summary["runs"][0]["snapshots"] == 9
    html = (out / "report.html").read_text()
    assert "ancre viz: r (step 40)" in html and "mean_source_distance" in html
    assert "wrote 16 files" in capsys.readouterr().out


def test_compare_records_the_step_ratio(make_run, tmp_path, capsys):
    steps = list(range(0, 101, 10))
    base = make_run("cascaded", [[[0.0, 0.0]]] * 2, "cascaded", metrics_lines(steps, rate=0.01))
    ancre_run = make_run("ancre", [[[1.0, 0.0]]] * 2, records=metrics_lines(steps, rate=0.02))
    out = tmp_path / "out"
    assert viz(ancre_run, "--out", out, "--compare", base, "--baseline", "cascaded") == 0
    line = "ancre needs 50.0% fewer steps than cascaded"
    assert line in capsys.readouterr().out
    comparison = json.loads((out / "summary.json").read_text())["comparisons"][0]
    assert comparison["step_ratio"] == pytest.approx(0.5)
    assert comparison["steps"] == pytest.approx(50) and comparison["curve"] == "val_loss"
    assert line in (out / "report.html").read_text()
    # the baseline defaults to the first run given
    assert viz(base, "--out", tmp_path / "o2", "--compare", ancre_run) == 0
    assert "ancre needs 50.0% fewer" in capsys.readouterr().out


def test_single_snapshot_and_one_layer(make_run, tmp_path):
    run = make_run("one", [[[1.0, 0.0]]])
    assert viz(run, "--out", tmp_path / "out", "--threshold", 0.1) == 0
    check_report(tmp_path / "out")


def test_a_snapshot_file_alone(make_run, tmp_path):
    run = make_run("r", [softmax_matrix(3)])
    assert viz(run / "topology" / "step_00000000.json", "--out", tmp_path / "out") == 0
    assert all((tmp_path / "out" / f"{stem}.png").exists() for stem in FIGURES)


def error_of(capsys, *args):
    assert viz(*args) == 2
    err = capsys.readouterr().err
    assert err.startswith("ancre viz: error: ")
    return err


def test_missing_folder(tmp_path, capsys):
    err = error_of(capsys, tmp_path / "nope", "--out", tmp_path / "out")
    assert "nope: no such run folder" in err


def test_missing_step_and_baseline(make_run, tmp_path, capsys):
    run = make_run("r", [softmax_matrix(2)] * 2)
    assert "no topology snapshot at step 7" in error_of(capsys, run, "--out", tmp_path, "--step", 7)
    other = make_run("s", [softmax_matrix(2)])
    err = error_of(capsys, run, "--out", tmp_path, "--compare", other, "--baseline", "x")
    assert "baseline 'x' is not one of the runs (r, s)" in err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "other"}, "not an ancre-topology snapshot"),
        ({"version": 5}, "snapshot version 5"),
        ({"matrix": [[1.0, 0.0, 0.0], [0.4, 0.4, 0.0]]}, "row 1 of the softmax matrix sums to"),
        (
            {"parameterisation": "uniform", "matrix": [[0.9, 0.0, 0.0], [0.5, 0.5, 0.0]]},
            "row 0 of the uniform matrix sums to",
        ),
    ],
)
def test_bad_snapshot_names_the_file(make_run, tmp_path, capsys, change, message):
    run = make_run("r", [softmax_matrix(2)] * 2)
    path = run / "topology" / "step_00000010.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    err = error_of(capsys, run, "--out", tmp_path / "out")
    assert f"{path}: {message}" in err


def test_not_json_snapshot(make_run, tmp_path, capsys):
    run = make_run("r", [softmax_matrix(2)])
    (run / "topology" / "step_00000000.json").write_text("{half")
    assert "step_00000000.json: not a JSON file" in error_of(capsys, run, "--out", tmp_path)


def test_mp4_falls_back_to_gif_without_ffmpeg(make_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    run = make_run("r", [softmax_matrix(2)] * 2)
    assert viz(run, "--out", tmp_path / "out", "--mp4") == 0
    assert "ffmpeg is not on PATH" in capsys.readouterr().out
    assert (tmp_path / "out" / "topology_evolution.gif").exists()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not on PATH")
def test_mp4_with_ffmpeg(make_run, tmp_path):
    run = make_run("r", [softmax_matrix(2)] * 3)
    assert viz(run, "--out", tmp_path / "out", "--mp4") == 0
    assert (tmp_path / "out" / "topology_evolution.mp4").stat().st_size > 0


def test_report_opens_in_headless_chromium(make_run, tmp_path):
    run = make_run("r", [softmax_matrix(5, seed=k) for k in range(4)])
    assert viz(run, "--out", tmp_path / "out") == 0
    check_in_chromium(tmp_path / "out" / "report.html", tmp_path, len(FIGURES) + 1)


def test_a_sweep_folder_of_seeds_is_compared_by_mean_and_spread(make_run, tmp_path, capsys):
    steps = list(range(0, 101, 10))
    for kind, rate in (("cascaded", 0.01), ("ancre", 0.02)):
        for seed in range(3):
            run = make_run(f"sweep/{kind}-s{seed}", [[[1.0, 0.0]]] * 2,
                           records=metrics_lines(steps, rate=rate * (1 + 0.02 * seed)))  # fmt: skip
            (run / "config.yaml").write_text(
                f"run:\n  seed: {seed}\n  name: {kind}-s{seed}\ntopology:\n  kind: {kind}\n"
                "train:\n  steps: 100\n"
            )
    first = tmp_path / "sweep" / "ancre-s0"
    assert viz(first, "--out", tmp_path / "out", "--compare", tmp_path / "sweep",
               "--baseline", "cascaded") == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "ancre: final val_loss" in printed and "(3 seeds)" in printed
    assert "larger than the spread of the seeds" in printed


def test_runs_with_different_schedules_are_flagged(make_run, tmp_path, capsys):
    steps = list(range(0, 101, 10))
    runs = []
    for name, total in (("a", 100), ("b", 60)):
        run = make_run(name, [[[1.0, 0.0]]] * 2, records=metrics_lines(steps[: total // 10 + 1]))
        (run / "config.yaml").write_text(f"train:\n  steps: {total}\n")
        runs.append(run)
    assert viz(runs[0], "--out", tmp_path / "out", "--compare", runs[1]) == 0
    assert "differ in more than the compared keys (topology.)" in capsys.readouterr().out
    assert "train.steps: a=100, b=60" in (tmp_path / "out/summary.json").read_text()
