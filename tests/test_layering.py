"""The import rules of docs/architecture.md, checked on the source and in a fresh interpreter."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from ancre.cli import COMMANDS

PACKAGE = Path(__file__).resolve().parents[1] / "ancre"
DISTRIBUTED = ("deepspeed", "torch.distributed")

# module (or package) -> the ancre modules it may import
ALLOWED = {
    "ancre.atomic": set(),
    "ancre.config": {"ancre.config"},
    "ancre.stop_signals": set(),
    "ancre.kernels": {"ancre.kernels"},
    "ancre.snapshot": {"ancre.atomic"},
    "ancre.model": {"ancre.model", "ancre.config", "ancre.kernels", "ancre.snapshot"},
    "ancre.data": {"ancre.data", "ancre.config", "ancre.atomic", "ancre.stop_signals"},
    "ancre.checkpoint": {"ancre.atomic", "ancre.config", "ancre.snapshot"},
    "ancre.run_folder": {
        "ancre.run_folder",
        "ancre.atomic",
        "ancre.checkpoint",
        "ancre.config",
        "ancre.snapshot",
    },  # fmt: skip
    "ancre.pretrained": {"ancre.config", "ancre.model"},
    "ancre.train.launcher": set(),
    "ancre.sweep": {
        "ancre.sweep",
        "ancre.atomic",
        "ancre.checkpoint",
        "ancre.config",
        "ancre.run_folder",
    },  # fmt: skip
    "ancre.viz": {"ancre.viz", "ancre.config", "ancre.run_folder", "ancre.snapshot"},
    "ancre.cli": {"ancre.train.preemption", "ancre.stop_signals"},  # subcommands imported by name
    "ancre.generate": {"ancre.generate", "ancre.config", "ancre.data", "ancre.model"},
    "ancre.tasks": {
        "ancre.tasks",
        "ancre.atomic",
        "ancre.config",
        "ancre.data",
        "ancre.generate",
        "ancre.model",
    },  # fmt: skip
    "ancre.export.remote": set(),  # copied into exported folders: torch and transformers only
}

# what sits on top and may import everything: the training package, the export package
# (it reads training checkpoints), the sizing package (it plans training runs) and every
# subcommand's commands module
ON_TOP = ("ancre", "ancre.train", "ancre.export", "ancre.sizing")

# packages whose subcommand is dispatched from ancre/cli.py as <package>.commands
SUBCOMMAND_PACKAGES = ("train", "export", "sweep", "viz", "generate", "sizing")


def on_top(name: str) -> bool:
    """Whether a module sits on top of the layering (no rule of its own)."""
    if name.endswith(".commands") or name.startswith("ancre.export.remote"):
        return name.endswith(".commands")
    return name in ON_TOP or any(name.startswith(top + ".") for top in ON_TOP[1:])


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("folder", ["model", "kernels"])
def test_model_and_kernels_never_import_distributed_code(folder):
    for path in (PACKAGE / folder).rglob("*.py"):
        for name in imports_of(path):
            assert not name.startswith(DISTRIBUTED), f"{path} imports {name}"


def test_importing_model_and_kernels_loads_no_distributed_module():
    code = (
        "import sys, ancre.model, ancre.kernels, ancre.data.loader, ancre.snapshot, "
        "ancre.pretrained;"
        "print(sorted(m for m in sys.modules if m.startswith('deepspeed')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_only_the_engine_imports_deepspeed():
    importers = {
        module_name(p)
        for p in PACKAGE.rglob("*.py")
        if any(n.startswith(DISTRIBUTED) for n in imports_of(p))
    }
    # ancre.train.torchrun is torchrun itself (its launcher process), run around the workers
    allowed = ("ancre.train.engine.", "ancre.train.torchrun")
    assert importers and all(name.startswith(allowed) for name in importers)


def test_modules_import_only_what_the_layering_allows():
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        rule = next((ALLOWED[k] for k in ALLOWED if name == k or name.startswith(k + ".")), None)
        if on_top(name):
            continue  # train, export, the commands modules and tools may import everything
        assert rule is not None, f"{name} has no rule"
        for imported in imports_of(path):
            if imported == "ancre" or imported.startswith("ancre."):
                top = next((r for r in rule if imported == r or imported.startswith(r + ".")), None)
                assert top is not None, f"{name} imports {imported}; allowed: {sorted(rule)}"


def test_every_module_has_a_rule_or_sits_on_top():
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        ruled = any(name == k or name.startswith(k + ".") for k in ALLOWED)
        assert ruled or on_top(name), f"{name} has no rule"


def test_nothing_below_the_trainer_imports_it():
    # no arrow pointing up: only what sits on top (and the CLI's table) names train/
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        if on_top(name) or name == "ancre.cli":
            continue
        for imported in imports_of(path):
            assert not imported.startswith("ancre.train"), f"{name} imports {imported}"


def test_training_never_imports_the_export():
    # the export reads what training wrote; training never needs the export (no cycle)
    for path in (PACKAGE / "train").rglob("*.py"):
        name = module_name(path)
        for imported in imports_of(path):
            assert not imported.startswith("ancre.export"), f"{name} imports {imported}"


def test_subcommands_live_in_their_package_commands_module():
    modules = {module for module, _ in COMMANDS.values()}
    assert modules == {f"ancre.{package}.commands" for package in SUBCOMMAND_PACKAGES}
    top_level = {p.stem for p in PACKAGE.glob("*.py")}
    assert not top_level & {"convert", "sweep", "sweep_commands"}


def test_run_folder_and_checkpoint_files_load_without_torch():
    code = (
        "import sys, ancre.run_folder, ancre.checkpoint;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'deepspeed')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_only_the_run_folder_spells_run_folder_paths():
    # the names of the run folder's entries, joined onto paths, live in ancre/run_folder
    entries = (
        '"metrics.jsonl"', '"checkpoints"', '/ "topology"', '/ "latest"', '"run.lock"',
        '"superseded"', '/ "wandb"',
    )  # fmt: skip
    offenders = [
        f"{module_name(p)}: {name}"
        for p in PACKAGE.rglob("*.py")
        if not module_name(p).startswith("ancre.run_folder")
        for name in entries
        if name in p.read_text()
    ]
    assert offenders == []


CHECKPOINT_NAMES = {
    '"engine"': (), '"trainer_state.json"': (), '"manifest.json"': (), '"ranks"': (),
    '"universal"': (), "rank_{": ("ancre.cli",),  # the launcher's exit files, not a checkpoint's
    # the run folder, a conversion, an HF export and an HF source hold files of those names
    '"topology.json"': ("ancre.pretrained",),
    '"config.yaml"': ("ancre.pretrained", "ancre.run_folder.layout"),
    '"tokenizer.model"': ("ancre.pretrained", "ancre.run_folder.layout", "ancre.export.hf",
                          "ancre.config.hf_source"),
}  # fmt: skip


def test_only_the_checkpoint_spells_checkpoint_file_names():
    # ancre/checkpoint.py's CheckpointFolder is the one owner of a checkpoint's file names
    offenders = [
        f"{module_name(p)}: {name}"
        for p in PACKAGE.rglob("*.py")
        if module_name(p) != "ancre.checkpoint"
        for name, formats in CHECKPOINT_NAMES.items()
        if name in p.read_text() and module_name(p) not in formats
    ]
    assert offenders == []


def test_every_module_imports():
    # a module that cannot even be imported fails here, not in the first run that needs it
    names = sorted(module_name(p) for p in PACKAGE.rglob("*.py"))
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)"
    out = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
