"""Compiling the Triton kernels for real GPUs on a machine without one, and reading the PTX.

Triton compiles a kernel for a CUDA target without a GPU: TTIR, TTGIR, LLVM IR, PTX,
then a cubin with the bundled ptxas. A kernel module lists the specialisations its
launchers compile (:class:`KernelLaunch`: argument types, constants and the arguments
the launcher sees 16-byte aligned), and this module compiles each one for a target
and reports what the GPU would run: registers, spills, shared memory, and every global
load and store by width and by the argument it reads or writes.

A *stream* is a tensor a kernel walks through (y, a state, a gradient, the output);
its loads and stores should move 16 bytes per thread per instruction. A pointer that a
kernel loads from memory (a table of pointers) is traced to that table, so the states
read through it count as the table's stream. Loads of single values (a weight, a
pointer from the table) and per-program scalar stores are not stream operations.

Run in a process where ``TRITON_INTERPRET`` is not set: the interpreter replaces the
kernels by Python functions that cannot be compiled.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import triton
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import get_ptxas
from triton.compiler import ASTSource
from triton.runtime import JITFunction
from triton.runtime.interpreter import InterpretedFunction

import ancre.kernels

TARGETS = {"sm_80": 80, "sm_90": 90}
"""A100 and H100/H200."""
VECTOR_BYTES = 16

_PARAM = re.compile(r"\[\s*(\w+)_param_(\d+)\s*\]")
_REGISTER = re.compile(r"%[a-z]+\d+")
_INSTRUCTION = re.compile(r"^\s*(?:@!?%p\d+\s+)?([a-z][\w.]*)\s+(.*?);")
_GLOBAL = re.compile(r"^\s*(@!?%p\d+\s+)?(ld|st)\.global((?:\.\w+)*)\s+(.*?);")


@dataclass(frozen=True)
class KernelLaunch:
    """One specialisation a launcher compiles.

    Attributes:
        kernel: The ``@triton.jit`` function.
        label: What distinguishes this specialisation (e.g. ``bf16``).
        signature: Argument name -> Triton type (``*bf16``, ``i32``, ``constexpr``).
        constexprs: Values of the ``constexpr`` arguments.
        aligned: Arguments the launcher sees 16-byte aligned (pointers) or divisible by
            16 (integers); the JIT launcher specialises on exactly this.
        streams: The tensors the kernel walks through, by where their addresses come
            from (an argument's name, or ``*name`` for the pointers loaded from a
            table ``name``), with a name for the report.
    """

    kernel: Any
    label: str
    signature: dict[str, str]
    constexprs: dict[str, Any]
    aligned: tuple[str, ...]
    streams: dict[str, str]

    @property
    def name(self) -> str:
        """The kernel's function name."""
        return self.kernel.fn.__name__ if hasattr(self.kernel, "fn") else self.kernel.__name__

    @property
    def parameters(self) -> list[str]:
        """The kernel's runtime parameters in order (constexprs are compiled in)."""
        return [name for name, kind in self.signature.items() if kind != "constexpr"]


@dataclass(frozen=True)
class GlobalOp:
    """One global load or store of the PTX.

    Attributes:
        kind: ``ld`` or ``st``.
        width: Bytes it moves per thread.
        predicated: Whether a mask guards it.
        roots: The arguments its address comes from (``*table_ptr`` for a pointer loaded
            from the table).
    """

    kind: str
    width: int
    predicated: bool
    roots: frozenset[str]


@dataclass
class KernelReport:
    """What one specialisation compiles to on one target.

    Attributes:
        launch: The specialisation.
        target: ``sm_80`` or ``sm_90``.
        registers: Registers per thread (ptxas).
        spills: Bytes spilled (stores + loads, ptxas).
        shared: Bytes of shared memory.
        ops: Every global load and store.
        streams: Stream name -> the widths of its operations.
    """

    launch: KernelLaunch
    target: str
    registers: int
    spills: int
    shared: int
    ops: list[GlobalOp] = field(default_factory=list)
    streams: dict[str, list[int]] = field(default_factory=dict)

    @property
    def narrow_stream_ops(self) -> int:
        """Stream loads and stores of fewer than 16 bytes per thread."""
        return sum(w < VECTOR_BYTES for widths in self.streams.values() for w in widths)

    @property
    def vector_stream_ops(self) -> int:
        """Stream loads and stores of 16 bytes per thread."""
        return sum(w >= VECTOR_BYTES for widths in self.streams.values() for w in widths)

    def line(self) -> str:
        """One line of the report."""
        return (
            f"{self.launch.name} {self.target} {self.launch.label} regs={self.registers} "
            f"spills={self.spills} smem={self.shared} narrow_stream_ops={self.narrow_stream_ops} "
            f"vector_stream_ops={self.vector_stream_ops}"
        )


def compile_launch(launch: KernelLaunch, target: str) -> tuple[str, Any]:
    """Compiles one specialisation for a target; returns its PTX and the compiled kernel."""
    names = list(launch.signature)
    attrs = {(names.index(a),): [["tt.divisibility", 16]] for a in launch.aligned}
    source = ASTSource(
        fn=launch.kernel, signature=launch.signature, constexprs=launch.constexprs, attrs=attrs
    )
    compiled = triton.compile(source, target=GPUTarget("cuda", TARGETS[target], 32))
    return compiled.asm["ptx"], compiled


def ptxas_usage(ptx: str, target: str) -> tuple[int, int]:
    """(registers per thread, spilled bytes) as ptxas reports them."""
    ptxas = get_ptxas(TARGETS[target]).path
    declared = re.search(r"^\.target\s+(\w+)", ptx, re.M)  # sm_90a for sm_90
    gpu = declared.group(1) if declared else target
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "kernel.ptx"
        source.write_text(ptx)
        result = subprocess.run(
            [ptxas, "-v", f"--gpu-name={gpu}", str(source), "-o", str(Path(tmp) / "k.cubin")],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    text = result.stdout + result.stderr
    registers = re.search(r"Used (\d+) registers", text)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
    return (
        int(registers.group(1)) if registers else -1,
        int(spills.group(1)) + int(spills.group(2)) if spills else 0,
    )


def global_ops(ptx: str, parameters: list[str]) -> list[GlobalOp]:
    """Every global load and store of a PTX kernel, traced back to the arguments."""
    sources: dict[str, set[str]] = {}  # register -> registers and roots it is made from
    ops: list[tuple[str, int, bool, str]] = []
    for line in ptx.splitlines():
        if match := _GLOBAL.match(line):
            predicate, kind, suffixes, operands = match.groups()
            width = _width(suffixes)
            address = re.search(r"\[\s*(%[a-z]+\d+)", operands)
            if kind == "ld":
                for dest in _REGISTER.findall(operands.split("[")[0]):
                    sources.setdefault(dest, set()).add(f"*{address.group(1)}" if address else "")
            if address:
                ops.append((kind, width, predicate is not None, address.group(1)))
            continue
        match = _INSTRUCTION.match(line)
        if not match or match.group(1).startswith(("st.", "bra", "ret", "bar", "setp")):
            continue
        operands = match.group(2)
        if param := _PARAM.search(operands):
            dest = _REGISTER.findall(operands)[:1]
            if dest:
                index = int(param.group(2))
                sources.setdefault(dest[0], set()).add(f"@{parameters[index]}")
            continue
        registers = _REGISTER.findall(operands)
        if registers:
            sources.setdefault(registers[0], set()).update(registers[1:])
    return [
        GlobalOp(kind, width, pred, frozenset(_roots(reg, sources)))
        for kind, width, pred, reg in ops
    ]


def _width(suffixes: str) -> int:
    parts = suffixes.strip(".").split(".")
    count = next((int(p[1:]) for p in parts if re.fullmatch(r"v\d+", p)), 1)
    bits = next((int(p[1:]) for p in parts if re.fullmatch(r"[bufs]\d+", p)), 32)
    return count * bits // 8


def _roots(register: str, sources: dict[str, set[str]]) -> set[str]:
    """The arguments a register's value comes from (``*arg`` through a loaded pointer)."""
    found: set[str] = set()
    seen: set[str] = set()
    stack = [(register, "")]
    while stack:
        reg, through = stack.pop()
        if (reg, through) in seen:
            continue
        seen.add((reg, through))
        for item in sources.get(reg, ()):
            if item.startswith("@"):
                found.add(through + item[1:])
            elif item.startswith("*%"):
                stack.append((item[1:], "*"))
            elif item.startswith("%"):
                stack.append((item, through))
    return found


def report(launch: KernelLaunch, target: str) -> KernelReport:
    """Compiles a specialisation for a target and reads what it runs."""
    ptx, compiled = compile_launch(launch, target)
    registers, spills = ptxas_usage(ptx, target)
    shared = int(getattr(compiled.metadata, "shared", 0) or 0)
    result = KernelReport(launch, target, registers, spills, shared)
    result.ops = global_ops(ptx, launch.parameters)
    for op in result.ops:
        for root in op.roots & launch.streams.keys():
            result.streams.setdefault(launch.streams[root], []).append(op.width)
    return result


def reports(
    launches: Iterable[KernelLaunch], targets: Iterable[str] = TARGETS
) -> list[KernelReport]:
    """Reports of every specialisation on every target."""
    return [report(launch, target) for launch in launches for target in targets]


def kernel_modules() -> list[Any]:
    """The modules of ``ancre.kernels`` that define Triton kernels (``launches()``)."""
    found = []
    for info in pkgutil.iter_modules(ancre.kernels.__path__):
        module = importlib.import_module(f"ancre.kernels.{info.name}")
        if hasattr(module, "launches"):
            found.append(module)
    return found


def jit_kernels(module: Any) -> list[str]:
    """The names of the ``@triton.jit`` kernels a module defines (``*_kernel``)."""
    return sorted(
        name for name, value in vars(module).items()
        if name.endswith("_kernel") and isinstance(value, JITFunction | InterpretedFunction)
    )  # fmt: skip
