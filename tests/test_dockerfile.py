"""The Dockerfile (it cannot be built here): pinned CUDA base, ancre[gpu], the entry point."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from tests.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def test_base_image_is_a_pinned_cuda_devel_pytorch():
    (base,) = [args for word, args in instructions() if word == "FROM"]
    image, _, tag = base.partition(":")
    assert image == "pytorch/pytorch"
    assert re.fullmatch(r"\d+\.\d+\.\d+-cuda12\.\d+-cudnn\d+-devel", tag), tag


def test_installs_the_package_with_the_gpu_extra_and_prebuilt_deepspeed_ops():
    runs = " ".join(args for word, args in instructions() if word == "RUN")
    assert '".[gpu]"' in runs and "FLASH_ATTENTION_FORCE_BUILD=TRUE" in runs
    assert '"$INSTALL_FLASH_ATTN" = 1' in runs  # the build argument skips flash-attn
    assert "DS_BUILD_FUSED_ADAM=1" in runs and "DS_BUILD_CPU_ADAM=1" in runs
    assert "-c /etc/pip-constraints.txt" in runs  # the image's torch is kept
    args = dict(a.split("=", 1) for w, a in instructions() if w == "ARG")
    assert args["INSTALL_FLASH_ATTN"] == "1" and int(args["MAX_JOBS"]) > 0
    envs = " ".join(a for w, a in instructions() if w == "ENV")
    assert "MAX_JOBS=${MAX_JOBS}" in envs


def test_entry_point_is_the_ancre_command():
    (entry,) = [args for word, args in instructions() if word == "ENTRYPOINT"]
    assert json.loads(entry) == ["ancre"]
    copied = [args.split()[0] for word, args in instructions() if word == "COPY"]
    assert {"pyproject.toml", "ancre", "configs", "launch"} <= set(copied)


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint is not installed")
def test_hadolint_passes():
    result = subprocess.run(["hadolint", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
