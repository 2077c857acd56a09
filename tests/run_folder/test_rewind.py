"""Tests for ancre/run_folder/rewind.py and retention.py: what a run lets go of."""

from __future__ import annotations

import json

from ancre.run_folder import prune, rewind, start_over


def write_history(run, steps):
    run.topology_dir.mkdir(exist_ok=True)
    for step in steps:
        run.snapshot_path(step).write_text("{}")
    lines = [json.dumps({"step": s, "loss": 1.0}) for s in steps]
    run.metrics_file.write_text("\n".join(lines) + '\n{"step": 99, "lo')


def logged_steps(run):
    return [json.loads(line)["step"] for line in run.metrics_file.read_text().splitlines()]


def test_rewind_after_a_kill_drops_uncheckpointed_progress(run, checkpoint_at):
    resume = checkpoint_at(run, 4)
    torn = run.checkpoint_folder(6)
    (torn / "engine").mkdir(parents=True)  # a checkpoint killed while being written
    write_history(run, [0, 2, 4, 5, 6])
    assert rewind(run, resume, 4) is None
    assert logged_steps(run) == [0, 2, 4]
    assert [s for s, _ in run.snapshots()] == [0, 2, 4]
    assert not torn.exists() and run.latest() == resume


def test_rewind_to_an_older_checkpoint_sets_newer_complete_ones_aside(run, checkpoint_at, caplog):
    older = checkpoint_at(run, 4)
    newer = [checkpoint_at(run, 8), checkpoint_at(run, 12)]
    write_history(run, [0, 4, 8, 12])
    original = run.metrics_file.read_text()
    aside = rewind(run, older, 4)
    assert aside is not None and aside.parent == run.superseded_dir
    assert sorted(p.name for p in (aside / "checkpoints").iterdir()) == [f.name for f in newer]
    assert sorted(p.name for p in (aside / "topology").iterdir()) == [
        "step_00000008.json", "step_00000012.json",
    ]  # fmt: skip
    assert (aside / "metrics.jsonl").read_text() == original
    assert not any(f.exists() for f in newer)
    assert run.latest() == older and logged_steps(run) == [0, 4]
    assert str(aside) in caplog.text


def test_prune_keeps_the_newest_and_what_latest_names(run, checkpoint_at):
    folders = [checkpoint_at(run, step) for step in (2, 4, 6, 8)]
    assert prune(run, keep_last=0) == []
    assert prune(run, keep_last=2) == folders[:2]
    assert [f.exists() for f in folders] == [False, False, True, True]
    run.publish(folders[2])  # as if step 8 had not been published
    assert prune(run, keep_last=1) == []
    assert folders[2].exists()


def test_prune_never_touches_set_aside_checkpoints(run, checkpoint_at):
    older = checkpoint_at(run, 2)
    checkpoint_at(run, 4)
    aside = rewind(run, older, 2)
    for step in (6, 8, 10):
        checkpoint_at(run, step)
    prune(run, keep_last=1)
    assert [s for s, _ in run.step_folders()] == [10]
    assert (aside / "checkpoints" / "step_00000004").is_dir()


def test_start_over_deletes_only_what_a_run_writes(run, checkpoint_at):
    checkpoint_at(run, 2)
    write_history(run, [0, 2])
    (run.root / "notes.txt").write_text("mine")
    (run.superseded_dir / "old").mkdir(parents=True)
    start_over(run, overwrite=False)
    assert sorted(p.name for p in run.root.iterdir()) == ["notes.txt", "superseded"]
    start_over(run, overwrite=True)
    assert sorted(p.name for p in run.root.iterdir()) == ["notes.txt"]
