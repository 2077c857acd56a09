"""The launch scripts: syntax, clear refusals, the commands they print; SLURM discovery."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ancre.train.launcher import first_host, slurm_variables
from tests.conftest import REPO

LAUNCH = REPO / "launch"
SCRIPTS = ["train.sh", "torchrun_multinode.sh", "multinode_deepspeed.sh", "slurm.sbatch"]
CONFIG = str(REPO / "configs/quickstart.yaml")


def script(name: str, *args: str, env: dict[str, str], cwd: Path = REPO):
    return subprocess.run(
        ["bash", str(LAUNCH / name), *args], capture_output=True, text=True, env=env, cwd=cwd
    )


@pytest.mark.parametrize("name", [*SCRIPTS, "common.sh"])
def test_scripts_parse(name):
    assert subprocess.run(["bash", "-n", str(LAUNCH / name)]).returncode == 0


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_passes():
    files = [f"launch/{name}" for name in [*SCRIPTS, "common.sh"]]
    result = subprocess.run(["shellcheck", "-x", *files], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    ("name", "args", "extra_env", "message"),
    [
        ("train.sh", [], {}, "no config given"),
        ("train.sh", ["nope.yaml"], {}, "config file not found: nope.yaml"),
        ("train.sh", ["--procs", "x", CONFIG], {}, "--procs must be a positive number"),
        ("torchrun_multinode.sh", [CONFIG], {"MASTER_ADDR": "h"}, "NNODES is not set"),
        ("torchrun_multinode.sh", [CONFIG], {"NNODES": "2"}, "MASTER_ADDR is not set"),
        ("torchrun_multinode.sh", [CONFIG], {"NNODES": "2", "MASTER_ADDR": "h"},
         "NODE_RANK is not set"),
        ("multinode_deepspeed.sh", [], {}, "no hostfile given"),
        ("multinode_deepspeed.sh", ["missing-hostfile", CONFIG], {}, "hostfile not found"),
        ("slurm.sbatch", [CONFIG], {}, "SLURM_JOB_ID is not set"),
    ],
)  # fmt: skip
def test_missing_settings_are_named(name, args, extra_env, message, subprocess_env):
    env = {k: v for k, v in subprocess_env.items() if k not in ("NNODES", "MASTER_ADDR")}
    result = script(name, *args, env={**env, **extra_env})
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


def test_bad_hostfile_lines_are_refused(tmp_path, subprocess_env):
    hostfile = tmp_path / "hosts"
    hostfile.write_text("node-1 slots=8\nnode-2 gpus=8\n")
    result = script("multinode_deepspeed.sh", str(hostfile), CONFIG, env=subprocess_env)
    assert result.returncode == 2 and "every line must read 'HOSTNAME slots=N'" in result.stderr


def test_the_example_hostfile_is_valid():
    lines = [
        line for line in (LAUNCH / "hostfile.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]  # fmt: skip
    assert lines and all(len(line.split()) == 2 and "slots=" in line for line in lines)


def test_slurm_script_runs_one_torchrun_per_node(tmp_path, subprocess_env):
    """With stand-in srun and scontrol: the command it would run on a 2-node job."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text('#!/bin/sh\necho "srun $*"\n')
    # a long node list after the first two: the script must read the first without a
    # pipe into head, whose early exit SIGPIPEs scontrol and, under pipefail, the job
    (bin_dir / "scontrol").write_text(
        "#!/bin/sh\necho gpu07\necho gpu08\nseq 1 200000 | sed 's/^/gpu-extra-/'\n"
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {
        **subprocess_env, "PATH": f"{bin_dir}{os.pathsep}{subprocess_env['PATH']}",
        "SLURM_JOB_ID": "4242", "SLURM_SUBMIT_DIR": str(REPO), "SLURM_NNODES": "2",
        "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_GPUS_ON_NODE": "4",
    }  # fmt: skip
    result = script("slurm.sbatch", CONFIG, "train.steps=5", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "srun --nodes 2 --ntasks-per-node 1 --kill-on-bad-exit=1" in result.stdout
    assert "--nnodes 2 --nproc_per_node 4 --rdzv_id 4242 --rdzv_backend c10d" in result.stdout
    assert "--rdzv_endpoint gpu07:19242" in result.stdout  # 15000 + 4242
    assert result.stdout.rstrip().endswith(f"-m ancre.cli train {CONFIG} train.steps=5")
    direct = script("slurm.sbatch", CONFIG, env={**env, "ANCRE_SLURM_LAUNCH": "srun"})
    assert "srun --nodes 2 --ntasks-per-node 4 --kill-on-bad-exit=1" in direct.stdout
    assert "-m ancre.cli train" in direct.stdout and "torch.distributed.run" not in direct.stdout


# --- what the engine reads when srun starts the processes itself ---


@pytest.mark.parametrize(
    ("nodelist", "host"),
    [("gpu[03-05,9],cpu1", "gpu03"), ("node7", "node7"), ("a-b[010]", "a-b010"), ("x,y", "x")],
)
def test_first_host_of_a_node_list(nodelist, host):
    assert first_host(nodelist) == host


def test_slurm_variables_give_rank_world_and_rendezvous():
    env = {
        "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NTASKS": "8",
        "SLURM_STEP_NUM_TASKS": "6", "SLURM_JOB_NODELIST": "n[2-5]", "SLURM_JOB_ID": "123456",
    }  # fmt: skip
    assert slurm_variables(env) == {
        "RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "6", "MASTER_ADDR": "n2",
        "MASTER_PORT": str(15000 + 123456 % 20000),
    }  # fmt: skip
    chosen = {**env, "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29400"}
    assert slurm_variables(chosen)["MASTER_ADDR"] == "10.0.0.1"
    assert slurm_variables(chosen)["MASTER_PORT"] == "29400"
    launch_ip = {k: v for k, v in env.items() if k != "SLURM_JOB_NODELIST"}
    launch_ip["SLURM_LAUNCH_NODE_IPADDR"] = "10.1.1.1"
    assert slurm_variables(launch_ip)["MASTER_ADDR"] == "10.1.1.1"


def test_slurm_variables_name_what_is_missing():
    with pytest.raises(RuntimeError, match="SLURM_JOB_ID or MASTER_PORT is not set"):
        slurm_variables({"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "a"})


def test_slurm_time_limit_warning_checkpoints_and_requeues(tmp_path, subprocess_env):
    """SIGUSR1 to the batch script (--signal=B:USR1): scancel passes it on, then requeue."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    tools = {
        # a job step that stops, like a run that wrote its checkpoint, when told to
        "srun": f'#!/bin/bash\necho $$ > {tmp_path}/srun.pid\ntrap "exit 5" USR1\n'
        "for _ in $(seq 300); do sleep 0.1; done\n",
        "scancel": f'#!/bin/sh\necho "scancel $*" >> {calls}\n'
        f'kill -USR1 "$(cat {tmp_path}/srun.pid)"\n',
        "scontrol": f"#!/bin/sh\ncase $1 in show) echo gpu07;;\n"
        f'*) echo "scontrol $*" >> {calls};; esac\n',
    }
    for name, text in tools.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {
        **subprocess_env, "PATH": f"{bin_dir}{os.pathsep}{subprocess_env['PATH']}",
        "SLURM_JOB_ID": "4242", "SLURM_SUBMIT_DIR": str(REPO), "SLURM_NNODES": "1",
        "SLURM_JOB_NODELIST": "gpu07", "SLURM_GPUS_ON_NODE": "1",
    }  # fmt: skip
    job = subprocess.Popen(
        ["bash", str(LAUNCH / "slurm.sbatch"), CONFIG], env=env, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not (tmp_path / "srun.pid").exists():
        assert time.monotonic() < deadline and job.poll() is None
        time.sleep(0.05)
    job.send_signal(signal.SIGUSR1)
    _, stderr = job.communicate(timeout=30)
    assert job.returncode == 5, stderr
    assert calls.read_text().splitlines() == ["scancel --signal=USR1 4242", "scontrol requeue 4242"]
    assert "the time limit is near" in stderr and "requeueing job 4242" in stderr
    header = (LAUNCH / "slurm.sbatch").read_text()
    assert "#SBATCH --signal=B:USR1@300" in header and "#SBATCH --requeue" in header


def test_torchrun_wrapper_gives_ancre_s_exit_codes(tmp_path):
    from ancre.train.torchrun import combined_code, worker_codes

    assert combined_code([5, 4], 1) == 4  # a survivor that lost its peer
    assert combined_code([5, -9], 143) == 5  # the stop's checkpoint is complete
    assert combined_code([0, 6], 1) == 6 and combined_code([], 143) == 143
    assert combined_code([-9], 1) == 1
    (tmp_path / "rank_00000.exit").write_text("5\n")
    (tmp_path / "rank_00001.exit").write_text("torn")
    assert worker_codes(tmp_path) == [5]
