"""``ancre plan``: every preset planned on the meta device, the README's table, fitting
and what would fit, bad input."""

from __future__ import annotations

import re

import pytest

from ancre.cli import main
from ancre.config import load_config
from ancre.model.presets import PRESETS
from ancre.sizing.plan import size_plan
from tests.helpers.training import QUICKSTART, REPO


def preset_config(preset: str, *extra: str):
    return load_config(QUICKSTART, [f"model.preset={preset}", "data.seq_len=256", *extra])


def test_the_readme_table_is_what_the_meta_build_counts() -> None:
    rows = re.findall(
        r"^\| (\w+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| ([\d.]+)M \| ([\d.]+) \|$",
        (REPO / "README.md").read_text(), re.MULTILINE,
    )  # fmt: skip
    assert [row[0] for row in rows] == list(PRESETS)  # every preset, up to 7b
    for name, hidden, inner, layers, heads, millions, gflops in rows:
        preset = PRESETS[name]
        assert (preset.hidden_size, preset.intermediate_size) == (int(hidden), int(inner))
        assert (preset.num_layers, preset.num_heads) == (int(layers), int(heads))
        plan = size_plan(preset_config(name), 32000, 1, "h100")
        assert f"{plan.num_params / 1e6:.1f}" == millions
        assert f"{plan.flops_per_token / 1e9:.3f}" == gflops


def test_a_plan_sums_its_parts_and_splits_over_ranks() -> None:
    one = size_plan(preset_config("1b", "train.zero_stage=3"), 32000, 1, "h100")
    eight = size_plan(preset_config("1b", "train.zero_stage=3"), 32000, 8, "h100")
    assert one.computing == one.states.computing + one.acts.kept + one.acts.transient
    assert one.peak == max(one.computing, one.states.stepping)
    assert eight.states.weights * 8 == pytest.approx(one.states.weights, rel=1e-6)
    assert eight.step_seconds(0.4) == pytest.approx(one.step_seconds(0.4) / 8)
    assert one.mix_bound_s is not None and one.mix_bound_s > 0


def test_the_paper_1b_on_eight_h100s_fits(capsys) -> None:
    code = main(["plan", str(REPO / "configs/paper/1b.yaml"), "--gpus", "8", "--vocab-size",
                 "32000"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "fits: yes" in out and "1339.1M parameters" in out
    assert "step time (a model, not a measurement)" in out and "topology mix: at least" in out


def test_a_plan_that_does_not_fit_says_what_would(capsys) -> None:
    code = main(["plan", str(QUICKSTART), "model.preset=7b", "data.seq_len=4096",
                 "train.micro_batch_size=8", "train.global_batch_size=64", "--gpu", "a100",
                 "--vocab-size", "32000"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1 and "fits: NO" in out and "what would fit:" in out
    suggestions = out.split("what would fit:")[1].strip().splitlines()
    assert suggestions and all("GiB per rank" in line for line in suggestions)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--gpus", "0"], "--gpus: is 0"),
        (["data.tokenizer=/nowhere/spiece.model"], "is not on this machine; give its"),
        (["train.steps=-1"], "train.steps"),
    ],
)
def test_bad_input_is_one_line_naming_it(capsys, args, error) -> None:
    assert main(["plan", str(QUICKSTART), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ancre plan: error:") and error in err


def test_the_ranks_of_a_cpu_run_share_its_memory() -> None:
    one = size_plan(preset_config("60m"), 32000, 1, "cpu")
    four = size_plan(preset_config("60m"), 32000, 4, "cpu")
    assert four.device.memory == one.device.memory // 4  # one machine, four processes
    assert "shared by 4 processes" in four.device.name
