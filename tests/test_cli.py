"""The `ancre` command on bad input: a clear message naming the key, and exit code 2.

These run the command in this process (nothing is started before the input is refused).
"""

import signal
import subprocess
import sys

import pytest

from ancre.cli import main
from tests.helpers.training import QUICKSTART, cli_error


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.global_batch_size=12", "train.global_batch_size"),
        ("topology.kind=dense", "topology.kind"),
        ("train.stepz=3", "train.stepz"),
        ("model.num_heads=5", "model.num_heads"),
    ],
)
def test_config_errors_name_the_key(override, key, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(f"run:\n  out_dir: {tmp_path}\ntrain:\n  micro_batch_size: 8\n")
    assert cli_error(capsys, "train", str(config), override).startswith(
        f"ancre train: error: {key}"
    )
    assert list(tmp_path.iterdir()) == [config]  # nothing written


def test_missing_config_file_is_named(tmp_path, capsys):
    assert "nope.yaml: no such config file" in cli_error(
        capsys, "train", str(tmp_path / "nope.yaml")
    )


def test_missing_data_path_says_what_to_do(tmp_path, capsys):
    message = cli_error(
        capsys, "train", str(QUICKSTART), f"run.out_dir={tmp_path}",
        f"data.path={tmp_path}/missing",
    )  # fmt: skip
    assert "data.path=" in message and "does not exist" in message


def test_a_refused_train_command_gives_back_the_signal_handlers(tmp_path, capsys):
    before = signal.getsignal(signal.SIGTERM)
    cli_error(capsys, "train", str(tmp_path / "nope.yaml"))
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_train_program_ignores_stop_signals_once_it_returns(tmp_path, subprocess_env):
    # as `python -m ancre.cli train`: a stop signal during the interpreter's shutdown,
    # where Python puts back the default handlers, must not kill a finished run
    code = (
        "import signal, sys\n"
        "from ancre.cli import main\n"
        f"sys.argv = ['ancre', 'train', {str(tmp_path / 'nope.yaml')!r}]\n"
        "code = main()\n"
        "print(code, [signal.getsignal(s) is signal.SIG_IGN for s in "
        "(signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=subprocess_env,
                            capture_output=True, text=True)  # fmt: skip
    assert result.stdout.strip() == "2 [True, True, True]", result.stderr[-2000:]


def test_unknown_command_prints_the_usage(capsys):
    assert main(["nope"]) == 2
    assert "usage: ancre COMMAND" in capsys.readouterr().err


def test_an_out_dir_under_a_file_is_named(tmp_path, capsys):
    (tmp_path / "notes").write_text("mine")
    for out_dir in (tmp_path / "notes", tmp_path / "notes" / "runs"):
        message = cli_error(capsys, "train", str(QUICKSTART), f"run.out_dir={out_dir}")
        assert f"run.out_dir: is '{out_dir}', but {tmp_path / 'notes'} is a file" in message
    assert (tmp_path / "notes").read_text() == "mine"
