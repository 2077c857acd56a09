"""Multi-node training proven on one machine: two "nodes" are two launcher invocations.

Each node runs launch/torchrun_multinode.sh (torchrun, one process per node) or
launch/multinode_deepspeed.sh (DeepSpeed's launcher without ssh); the run must
equal the same config run as one node with two processes (launch/train.sh --procs 2).
Killing one node must stop the other within a minute, naming the lost peer, and
relaunching both must resume and end with the uninterrupted run's metrics.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ancre.run_folder import RunLock
from tests.conftest import REPO
from tests.helpers.training import latest_checkpoint, records, train_args

pytestmark = pytest.mark.slow

LAUNCH = REPO / "launch"
CONFIG = str(REPO / "configs/quickstart.yaml")


def settings(out: Path, tokenizer: Path) -> list[str]:
    return train_args(out, "run", tokenizer, "checkpoint.every=2", "train.dist_timeout_s=60")


def free_port(low: int = 0, high: int = 0) -> int:
    for port in range(low, high) if low else [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free port")


def logged_lines(run_dir: Path) -> int:
    """Complete metrics lines so far (the file may be mid-write)."""
    path = run_dir / "metrics.jsonl"
    return path.read_text().count("\n") if path.exists() else 0


def start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
            start_new_session=True,
        )  # fmt: skip


def torchrun_node(rank: int, port: int, backend: str, args: list[str]) -> list[str]:
    return [
        "bash", str(LAUNCH / "torchrun_multinode.sh"), "--nnodes", "2", "--node-rank", str(rank),
        "--master-addr", "127.0.0.1", "--master-port", str(port), "--nproc-per-node", "1",
        "--rdzv-backend", backend, *args,
    ]  # fmt: skip


def run_nodes(commands, tmp_path: Path, env, tag: str, timeout: float = 300) -> list[str]:
    """Starts the nodes, waits for all; returns their logs (asserting success)."""
    logs = [tmp_path / f"{tag}-node{i}.log" for i in range(len(commands))]
    nodes = [start(c, log, e) for c, log, e in zip(commands, logs, env, strict=True)]
    for node, log in zip(nodes, logs, strict=True):
        assert node.wait(timeout=timeout) == 0, log.read_text()[-4000:]
    return [log.read_text() for log in logs]


def kill_node(node: subprocess.Popen) -> None:
    """SIGKILLs a node: the launcher's process group and each worker's (torchrun starts
    its workers in sessions of their own)."""
    children = Path(f"/proc/{node.pid}/task/{node.pid}/children").read_text().split()
    for child in children:
        os.killpg(os.getpgid(int(child)), signal.SIGKILL)
    os.killpg(node.pid, signal.SIGKILL)
    node.wait()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, subprocess_env, sample_tokenizer):
    """The run as one node with two processes (launch/train.sh --procs 2)."""
    out = tmp_path_factory.mktemp("one-node")
    command = ["bash", str(LAUNCH / "train.sh"), "--procs", "2"]
    command += settings(out, sample_tokenizer.path)
    result = subprocess.run(command, env=subprocess_env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "--standalone --nproc_per_node 2" in result.stderr  # the printed command
    expected = records(out / "run")
    assert [r["step"] for r in expected if "loss" in r] == list(range(1, 9))
    return expected


def test_two_torchrun_nodes_equal_one_node_with_two_processes(
    reference, tmp_path, subprocess_env, sample_tokenizer
):
    args = settings(tmp_path, sample_tokenizer.path)
    port = free_port()
    began = time.monotonic()
    logs = run_nodes(
        [torchrun_node(rank, port, "c10d", args) for rank in (0, 1)],
        tmp_path, [subprocess_env] * 2, "c10d",
    )  # fmt: skip
    print(f"two-node torchrun run (c10d rendezvous): {time.monotonic() - began:.1f} s")
    assert all("--rdzv_backend c10d" in log for log in logs)
    assert records(tmp_path / "run") == reference


def test_two_deepspeed_nodes_without_ssh_equal_one_node(
    reference, tmp_path, subprocess_env, sample_tokenizer
):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("# two nodes on this machine\nlocalhost slots=1\n127.0.0.1 slots=1\n")
    port = free_port()
    args = settings(tmp_path, sample_tokenizer.path)
    script = ["bash", str(LAUNCH / "multinode_deepspeed.sh"), str(hostfile), *args]
    envs = [
        {**subprocess_env, "NODE_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
         "MASTER_PORT": str(port)}
        for rank in (0, 1)
    ]  # fmt: skip
    logs = run_nodes([script, script], tmp_path, envs, "deepspeed")
    assert "--no_ssh --node_rank 0" in logs[0]
    assert records(tmp_path / "run") == reference


def test_srun_started_processes_find_each_other(
    reference, tmp_path, subprocess_env, sample_tokenizer
):
    """Processes started by srun with no launcher: ranks and rendezvous from SLURM_*."""
    port = free_port(15000, 35000)  # the engine derives 15000 + job id % 20000
    command = ["python", "-m", "ancre.cli", "train", *settings(tmp_path, sample_tokenizer.path)]
    envs = [
        {**subprocess_env, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank),
         "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "localhost", "SLURM_JOB_ID": str(port - 15000)}
        for rank in (0, 1)
    ]  # fmt: skip
    run_nodes([command, command], tmp_path, envs, "srun")
    assert records(tmp_path / "run") == reference


def test_killed_node_stops_the_other_and_both_resume(
    reference, tmp_path, subprocess_env, sample_tokenizer
):
    args = settings(tmp_path, sample_tokenizer.path)
    run_dir = tmp_path / "run"
    port = free_port()
    logs = [tmp_path / "node0.log", tmp_path / "node1.log"]
    nodes = [
        start(torchrun_node(rank, port, "static", args), logs[rank], subprocess_env)
        for rank in (0, 1)
    ]
    deadline = time.monotonic() + 240
    while not (latest_checkpoint(run_dir) and logged_lines(run_dir) >= 4):
        assert time.monotonic() < deadline and nodes[0].poll() is None, logs[0].read_text()
        time.sleep(0.05)
    kill_node(nodes[1])
    killed = time.monotonic()
    nodes[0].wait(timeout=60)  # raises TimeoutExpired on a hang
    print(f"node 0 stopped {time.monotonic() - killed:.1f} s after node 1 was killed")
    survivor = logs[0].read_text()
    assert nodes[0].returncode == 4, survivor[-3000:]  # ancre's code, through torchrun
    assert "ancre train: stopped: lost a peer: the process at 127.0.0.1:" in survivor, survivor
    complete = latest_checkpoint(run_dir)
    assert complete is not None and records(run_dir)[-1]["step"] < 8

    port = free_port()
    relaunched = run_nodes(
        [torchrun_node(rank, port, "static", args) for rank in (0, 1)],
        tmp_path, [subprocess_env] * 2, "resumed",
    )  # fmt: skip
    assert f"resuming from {complete}" in relaunched[0]
    assert records(run_dir) == reference


# --- a stop signal reaches every process through each launcher ---


def stopped_at(run_dir: Path) -> int:
    complete = latest_checkpoint(run_dir)
    assert complete is not None
    return int(complete.name.removeprefix("step_"))


def test_a_stop_signal_to_torchrun_reaches_every_process_and_the_run_resumes(
    reference, tmp_path, subprocess_env, sample_tokenizer
):
    args = settings(tmp_path, sample_tokenizer.path)
    run_dir = tmp_path / "run"
    command = ["bash", str(LAUNCH / "train.sh"), "--procs", "2", *args]
    node = start(command, tmp_path / "stopped.log", subprocess_env)
    deadline = time.monotonic() + 240
    while logged_lines(run_dir) < 3:  # step 0's evaluation and steps 1, 2
        assert time.monotonic() < deadline and node.poll() is None
        time.sleep(0.01)
    os.kill(node.pid, signal.SIGUSR1)  # torchrun (train.sh execs it), as SLURM would
    node.wait(timeout=120)
    log = (tmp_path / "stopped.log").read_text()
    assert node.returncode == 5, log[-3000:]  # ancre's code for a stop, not torchrun's 1
    assert "Traceback" not in log and "SignalException" not in log, log[-3000:]
    assert log.count("SIGUSR1 received: stopping after the current step") == 2, log[-3000:]
    assert "ancre train: stopped: SIGUSR1 received: stopped after step" in log
    step = stopped_at(run_dir)
    assert 2 <= step < 8 and records(run_dir)[-1]["step"] == step
    printed = next(line for line in log.splitlines() if "--signals-to-handle" in line)
    assert "SIGUSR1" in printed  # the command train.sh printed
    resumed = subprocess.run(command, env=subprocess_env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {latest_checkpoint(run_dir).parent / f'step_{step:08d}'}" in (
        resumed.stderr
    )
    assert records(run_dir) == reference


def workers_of(tmp_path: Path, launcher: int) -> list[int]:
    """Pids of the training processes (not the launcher) whose arguments name tmp_path."""
    found = subprocess.run(["pgrep", "-f", f"ancre.cli train .*{tmp_path}"], capture_output=True)
    return [int(pid) for pid in found.stdout.split() if int(pid) != launcher]


def test_workers_do_not_outlive_a_launcher_killed_with_sigkill(
    tmp_path, subprocess_env, sample_tokenizer
):
    args = settings(tmp_path, sample_tokenizer.path)
    run_dir = tmp_path / "run"
    command = ["bash", str(LAUNCH / "train.sh"), "--procs", "2", *args]
    node = start(command, tmp_path / "killed.log", subprocess_env)
    deadline = time.monotonic() + 240
    while logged_lines(run_dir) < 3:
        assert time.monotonic() < deadline and node.poll() is None
        time.sleep(0.01)
    assert len(workers_of(tmp_path, node.pid)) == 2
    os.kill(node.pid, signal.SIGKILL)  # torchrun itself (train.sh execs it): it forwards nothing
    node.wait()
    deadline = time.monotonic() + 120
    while workers_of(tmp_path, node.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    log = (tmp_path / "killed.log").read_text()
    assert workers_of(tmp_path, node.pid) == [], log[-3000:]
    # they stopped as on SIGTERM: with a checkpoint, and the lock is free for a relaunch
    assert 2 <= stopped_at(run_dir) < 8
    assert "SIGTERM received" in log
    lock = RunLock(run_dir / "run.lock")
    lock.acquire(wait_s=0)  # the lock is free: a relaunch may take it
    lock.release()


def test_a_stop_signal_to_one_deepspeed_node_stops_both_and_they_resume(
    reference, tmp_path, subprocess_env, sample_tokenizer
):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("localhost slots=1\n127.0.0.1 slots=1\n")
    args = settings(tmp_path, sample_tokenizer.path)
    run_dir = tmp_path / "run"
    script = ["bash", str(LAUNCH / "multinode_deepspeed.sh"), str(hostfile), *args]

    def envs() -> list[dict[str, str]]:
        port = str(free_port())
        return [
            {**subprocess_env, "NODE_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
             "MASTER_PORT": port}
            for rank in (0, 1)
        ]  # fmt: skip

    logs = [tmp_path / "ds-node0.log", tmp_path / "ds-node1.log"]
    nodes = [start(script, log, env) for log, env in zip(logs, envs(), strict=True)]
    deadline = time.monotonic() + 240
    while logged_lines(run_dir) < 3:
        assert time.monotonic() < deadline and nodes[0].poll() is None, logs[0].read_text()
        time.sleep(0.01)
    os.kill(nodes[1].pid, signal.SIGTERM)  # the script of node 1 only
    for node in nodes:
        node.wait(timeout=120)
    texts = [log.read_text() for log in logs]
    assert "SIGTERM: asking the training processes" in texts[1], texts[1][-3000:]
    assert "another process was told to stop" in texts[0] or "stopped after step" in texts[0]
    step = stopped_at(run_dir)
    assert 2 <= step < 8 and records(run_dir)[-1]["step"] == step
    run_nodes([script, script], tmp_path, envs(), "ds-resumed")
    assert records(run_dir) == reference
