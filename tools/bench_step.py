"""Training-step time of the same model wired cascaded, Ancre and uniform, in one run.

Each topology gets its own model (same seed, same shapes) and the same batches. Steps
(forward, backward, AdamW) are timed in turns, one step of each topology per round,
so drifts of a noisy machine hit them alike; the script prints the median step
time, tokens/s, MFU (on GPUs with a known peak; see ancre/train/flops.py), peak
memory, and the ratios to cascaded. No DeepSpeed: this measures the model.

    python tools/bench_step.py --preset tiny --seq-len 128 --micro-batch 8
    python tools/bench_step.py --saved-bytes --preset 60m --seq-len 256 --micro-batch 2

``--zoo`` compares the learned wirings of docs/topologies.md with cascaded and Ancre in
one run, per preset: parameters added, step time (steps interleaved, fp32) and saved-for-
backward bytes (bf16 autocast), each as a ratio to cascaded measured in that run:

    python tools/bench_step.py --zoo --presets tiny,60m --seq-len 256 --micro-batch 2

``--frozen MODE`` adds a fourth model: Ancre frozen (``topology.freeze_at``) and pruned by
MODE (none, top_k with ``--prune-k``, mass with ``--prune-mass``), so its mix reads only
the kept states and computes no matrix gradient: the step time after a freeze against
Ancre's before it. (Its matrix is the initial uniform one, pruned; the cost depends on
the number of kept edges only.)
    python tools/bench_step.py --preset tiny --frozen top_k --prune-k 2

``--forms`` adds Ancre and uniform in the replace and gated forms of ``topology.form``
(named ``kind:form``); ``--set KEY=VALUE`` (repeatable) overrides any config key, for
example the depth study's shape::

    python tools/bench_step.py --preset tiny --layers 24 --seq-len 64 --micro-batch 16 \
        --vocab-size 1024 --threads 1 --forms --set model.hidden_size=64 \
        --set model.num_heads=2 --set model.intermediate_size=176

``--block-stats EVERY`` also times the per-block statistics of ``train.block_stats_every``
(one forward pass without gradients over 4 sequences, ancre/model/depth_stats.py) and
prints their cost per step when taken every EVERY steps.

``--saved-bytes`` times nothing: it counts the bytes autograd keeps for the backward of
one forward pass (ancre/model/memory.py; device-independent, so it runs on a CPU) for
cascaded and Ancre, each backend, with and without block recompute, under bf16
autocast, and the size of the fused backward's gradient buffer (L states).
    python tools/bench_step.py --preset 1b --seq-len 2048 --micro-batch 4 --precision bf16 \
        --backend triton --attention auto --checkpointing none --compile
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from contextlib import nullcontext

import torch

from ancre.config import load_config
from ancre.kernels import triton_unavailable
from ancre.model import PRESETS, AncreTopology, Transformer, build_model
from ancre.model.depth_stats import DepthRecorder, recording
from ancre.model.memory import saved_for_backward_bytes
from ancre.model.topology.effective import PROBE_SEQUENCES
from ancre.train.flops import device_peak_flops, flops_per_token, mfu
from ancre.train.speedups import apply_speedups
from ancre.train.threads import apply_cpu_threads

TOPOLOGIES = ("cascaded", "ancre", "uniform")
FORMED = ("ancre:replace", "uniform:replace", "ancre:gated", "uniform:gated")
"""The wirings ``--forms`` adds: kind:form."""
ZOO = {
    "cascaded": [], "ancre": [], "uniform": [], "denseformer": [],
    "hyper": ["topology.streams=4"],
    "hyper-dynamic": ["topology.kind=hyper", "topology.streams=4", "topology.dynamic=true"],
    "mhc": ["topology.streams=4", "topology.dynamic=true"],
    "attnres": [],
    "attnres-block2": ["topology.kind=attnres", "topology.attnres_blocks={half}"],
    "attnres-delta": ["topology.kind=attnres", "topology.form=delta"],
    "speedrun-x0": ["topology.kind=fixed", "topology.edges=x0", "topology.form=gated"],
    "ancre+laurel": ["topology.kind=ancre", "model.laurel=rw_lr"],
    "ancre+vres": ["topology.kind=ancre", "model.value_residual=true"],
    "mudd": [], "mudd-sw": ["topology.kind=mudd", "topology.window={third}"],
    "frac": ["topology.kind=hyper", "topology.streams=1", "topology.fractions=4"],
    "frac-dynamic": ["topology.kind=hyper", "topology.streams=1", "topology.fractions=4",
                     "topology.dynamic=true"],
}  # fmt: skip
"""The configurations ``--zoo`` compares: name -> overrides (the kind is the name unless
set; ``{half}`` is half the blocks: Block AttnRes with groups of two; laurel is LAuReL
rw_lr at rank 16, vres value residual learning; mudd-sw MUDD over the last third of the
blocks (``{third}``: SW2 at 6 blocks, SW8 at 24, as the zoo sweeps); frac
Frac-Connections with 4 fractions)."""


def build(
    kind: str, args: argparse.Namespace, device: torch.device, extra: Sequence[str] = ()
) -> Transformer:
    """One model of the preset, wired by ``kind`` and the topology overrides ``extra``.

    ``ancre_frozen`` is Ancre with its matrix frozen and pruned (``--frozen``);
    ``kind:form`` the kind in that ``topology.form``.
    """
    torch.manual_seed(0)
    name, _, form = kind.partition(":")
    overrides = [
        f"model.preset={args.preset}",
        *([f"model.num_layers={args.layers}"] if args.layers else []),
        f"topology.kind={'ancre' if name == 'ancre_frozen' else name}",
        *([f"topology.form={form}"] if form else []),
        *extra,
        *args.set,
        f"data.seq_len={args.seq_len}",
        f"topology.backend={args.backend}",
        f"model.attention={args.attention}",
        f"train.recompute={args.checkpointing}",
        f"train.compile={str(args.compile).lower()}",
    ]
    config = load_config(None, overrides)
    model = apply_speedups(build_model(config, args.vocab_size), config.train).to(device)
    if kind == "ancre_frozen":
        assert isinstance(model.topology, AncreTopology)
        model.topology.freeze(0, args.frozen, args.prune_k, args.prune_mass)
    return model


def print_saved_bytes(args: argparse.Namespace, device: torch.device) -> None:
    """Saved-for-backward bytes of Ancre against cascaded, per backend and recompute."""
    generator = torch.Generator().manual_seed(0)
    batch = torch.randint(0, args.vocab_size, (args.micro_batch, args.seq_len + 1),
                          generator=generator).to(device)  # fmt: skip
    backends = ["reference"] + ([] if triton_unavailable() else ["triton"])
    print(f"saved for backward, preset {args.preset}, {args.micro_batch}x{args.seq_len} tokens, "
          f"bf16 autocast, vocab {args.vocab_size}")  # fmt: skip
    print(f"{'backend':<10} {'recompute':<10} {'cascaded MB':>12} {'ancre MB':>10} {'ratio':>7}")
    for backend in backends:
        for checkpointing in ("none", "blocks"):
            saved = {}
            for kind in ("cascaded", "ancre"):
                one = argparse.Namespace(**{**vars(args), "backend": backend,
                                            "checkpointing": checkpointing})  # fmt: skip
                model = build(kind, one, device).train()
                saved[kind] = saved_for_backward_bytes(model, batch[:, :-1], batch[:, 1:])
            ratio = saved["ancre"] / saved["cascaded"]
            print(f"{backend:<10} {checkpointing:<10} {saved['cascaded'] / 1e6:12.2f} "
                  f"{saved['ancre'] / 1e6:10.2f} {ratio:6.3f}x")  # fmt: skip
    shape = build("ancre", args, device).shape
    buffer = shape.num_layers * args.micro_batch * args.seq_len * shape.hidden_size * 2
    print(f"fused backward's gradient buffer (L = {shape.num_layers} bf16 states, held during "
          f"the mix backward): {buffer / 1e6:.2f} MB")  # fmt: skip


def zoo_models(args: argparse.Namespace, device: torch.device) -> dict[str, Transformer]:
    """The models of :data:`ZOO` at ``args.preset`` (and ``args.layers``)."""
    layers = args.layers or PRESETS[args.preset].num_layers
    models = {}
    for name, overrides in ZOO.items():
        extra = [o.format(half=layers // 2, third=layers // 3) for o in overrides
                 if not o.startswith("topology.kind=")]  # fmt: skip
        kind = next((o.split("=")[1] for o in overrides if o.startswith("topology.kind=")), name)
        models[name] = build(kind, args, device, extra)
    return models


def timed_step(model: Transformer, optimizer, batch: torch.Tensor, device: torch.device) -> float:
    """Seconds of one fp32 forward, backward and AdamW step."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    loss = model(batch[:, :-1], batch[:, 1:])
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def print_zoo_costs(args: argparse.Namespace, device: torch.device) -> None:
    """Parameters, step time and saved bytes of every wiring of ZOO, per preset."""
    generator = torch.Generator().manual_seed(0)
    for preset in args.presets.split(","):
        one = argparse.Namespace(**{**vars(args), "preset": preset})
        models = zoo_models(one, device)
        batches = [torch.randint(0, args.vocab_size, (args.micro_batch, args.seq_len + 1),
                                 generator=generator).to(device) for _ in range(2)]  # fmt: skip
        optimizers = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}
        times: dict[str, list[float]] = {name: [] for name in models}
        for i in range(args.warmup + args.steps):  # interleaved: drifts hit every wiring alike
            for name, model in models.items():
                took = timed_step(model, optimizers[name], batches[i % 2], device)
                if i >= args.warmup:
                    times[name].append(took)
        saved = {
            name: saved_for_backward_bytes(model.train(), batches[0][:, :-1], batches[0][:, 1:])
            for name, model in models.items()
        }
        base = models["cascaded"]
        shape = base.shape
        print(f"\npreset {preset}: L={shape.num_layers} D={shape.hidden_size}, "
              f"{args.micro_batch}x{args.seq_len} tokens, vocab {args.vocab_size}, "
              f"{device.type}, {torch.get_num_threads()} threads; step time: median of "
              f"{args.steps} fp32 steps after {args.warmup}, interleaved; saved bytes: one "
              "bf16-autocast forward (ancre/model/memory.py)")  # fmt: skip
        print(f"{'wiring':<15} {'params added':>13} {'% of model':>10} {'step ms':>9} "
              f"{'time ratio':>10} {'saved MB':>9} {'saved ratio':>11}")  # fmt: skip
        base_time = statistics.median(times["cascaded"])
        for name, model in models.items():
            added = model.num_parameters() - base.num_parameters()
            median = statistics.median(times[name])
            print(f"{name:<15} {added:13,d} {added / base.num_parameters():10.3%} "
                  f"{median * 1e3:9.1f} {median / base_time:9.3f}x "
                  f"{saved[name] / 1e6:9.1f} {saved[name] / saved['cascaded']:10.3f}x")  # fmt: skip


def stats_seconds(model: Transformer, batch: torch.Tensor, device: torch.device) -> float:
    """Seconds of one record of the per-block statistics over the probe's sequences."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    recorder = DepthRecorder()
    with torch.no_grad(), recording(model, recorder):
        model(batch[:PROBE_SEQUENCES, :-1])
    recorder.stats(model.topology.reads())
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    """Parses the arguments, times the steps and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--layers", type=int, default=0, help="blocks (0: the preset's)")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--backend", default="auto", help="topology.backend")
    parser.add_argument("--attention", default="auto", help="model.attention")
    parser.add_argument("--checkpointing", default="none", help="train.recompute")
    parser.add_argument("--compile", action="store_true", help="torch.compile each block")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per topology")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per topology")
    parser.add_argument(
        "--threads", type=int, default=0,
        help="torch CPU threads (0: the free cores, as training chooses them)",
    )  # fmt: skip
    parser.add_argument("--frozen", choices=("none", "top_k", "mass"),
                        help="also time Ancre frozen and pruned this way")  # fmt: skip
    parser.add_argument("--prune-k", type=int, default=2, help="entries per row (top_k)")
    parser.add_argument("--prune-mass", type=float, default=0.9, help="row mass kept (mass)")
    parser.add_argument("--saved-bytes", action="store_true",
                        help="count the bytes saved for backward instead of timing")  # fmt: skip
    parser.add_argument("--zoo", action="store_true",
                        help="compare the wirings of docs/topologies.md (see above)")  # fmt: skip
    parser.add_argument("--presets", default="tiny,60m", help="presets of --zoo")
    parser.add_argument("--forms", action="store_true",
                        help="also time Ancre and uniform in the other forms")  # fmt: skip
    parser.add_argument("--block-stats", type=int, default=0, metavar="EVERY",
                        help="also time the per-block statistics, every EVERY steps")  # fmt: skip
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every model (repeatable)")  # fmt: skip
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if (threads := apply_cpu_threads(args.threads, device)) is not None:
        print(threads)
    if args.saved_bytes:
        print_saved_bytes(args, device)
        return
    if args.zoo:
        print_zoo_costs(args, device)
        return
    kinds = (*TOPOLOGIES, *(FORMED if args.forms else ()))
    kinds = (*kinds, "ancre_frozen") if args.frozen else kinds
    models = {kind: build(kind, args, device) for kind in kinds}
    optimizers = {
        k: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)
        for k, m in models.items()
    }
    generator = torch.Generator().manual_seed(0)
    shape = (args.micro_batch, args.seq_len + 1)
    batches = [
        torch.randint(0, args.vocab_size, shape, generator=generator).to(device) for _ in range(4)
    ]
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if args.precision == "bf16"
        else nullcontext()
    )

    def step(kind: str, batch: torch.Tensor) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast:
            loss = models[kind](batch[:, :-1], batch[:, 1:])
        loss.backward()
        optimizers[kind].step()
        optimizers[kind].zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    peaks: dict[str, int] = {}
    for kind in kinds:  # peak memory of each topology alone, after its warm-up
        for i in range(args.warmup):
            step(kind, batches[i % len(batches)])
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            step(kind, batches[0])
            peaks[kind] = torch.cuda.max_memory_allocated()
    for i in range(args.steps):
        for kind in kinds:
            times[kind].append(step(kind, batches[i % len(batches)]))

    shape_ = models["cascaded"].shape
    tokens = args.micro_batch * args.seq_len
    print(
        f"preset {args.preset}: L={shape_.num_layers} D={shape_.hidden_size}, "
        f"{args.micro_batch}x{args.seq_len} tokens, {args.precision}, {device.type}, "
        f"{torch.get_num_threads()} threads, median of {args.steps} steps"
    )
    base = statistics.median(times["cascaded"])
    peak_flops = device_peak_flops()
    if args.frozen:
        wiring = models["ancre_frozen"].topology.wiring
        assert wiring is not None
        print(f"ancre_frozen: pruned by {args.frozen}, {wiring.num_edges} of "
              f"{shape_.num_layers * (shape_.num_layers + 1) // 2} connections kept")  # fmt: skip
    print(f"{'topology':<15} {'step ms':>9} {'tokens/s':>10} {'MFU':>6} {'peak GB':>8} "
          f"{'time vs cascaded':>17} {'memory vs cascaded':>19}")  # fmt: skip
    for kind in kinds:
        median = statistics.median(times[kind])
        rate = tokens / median
        use = mfu(rate, flops_per_token(models[kind], args.seq_len), peak_flops, 1)
        use_text = f"{use:6.1%}" if use is not None else f"{'n/a':>6}"
        # peak memory is measured on CUDA only (the CPU allocator keeps no peak)
        peak = f"{peaks[kind] / 1e9:8.2f}" if peaks else f"{'n/a':>8}"
        ratio = f"{peaks[kind] / peaks['cascaded']:18.3f}x" if peaks else f"{'n/a':>19}"
        print(f"{kind:<15} {median * 1e3:9.2f} {rate:10.0f} {use_text} {peak} "
              f"{median / base:16.3f}x {ratio}")  # fmt: skip
    if args.block_stats:
        print(f"per-block statistics ({PROBE_SEQUENCES} sequences, no gradients), median of "
              f"{args.steps}; share of a step, every {args.block_stats} steps:")  # fmt: skip
        for kind in kinds:
            models[kind].eval()
            seconds = statistics.median(
                stats_seconds(models[kind], batches[0], device) for _ in range(args.steps)
            )
            share = seconds / args.block_stats / statistics.median(times[kind])
            print(f"{kind:<15} {seconds * 1e3:9.2f} ms per record, {share:.2%} per step")


if __name__ == "__main__":
    main()
