"""The topology mix alone: its traffic model, then (on a GPU) the kernels against it.

First the model, which needs no GPU (ancre/kernels/traffic.py): per preset, the bytes
the fused forward and backward mix move for one micro-batch, the lower bound on their
time at the HBM bandwidth of A100, H100 and H200, and that bound as a share of the
training step at ``--mfu`` (FLOPs as in ancre/train/flops.py), with and without a
whole-layer recompute that would run the forward mix twice (ancre's recompute keeps
the states, so the mix runs once).

Then the depth table (``--depths``, default 24 48 64, at the width of ``--width-preset``,
1b): the row-by-row fused mix against the grouped one (ancre/kernels/grouped_triton.py,
G chosen by the model), bytes, bounds on H100 and H200 and share of the step.

For each preset, a stack of L mixes over a micro-batch of ``--tokens`` x hidden states
(the blocks replaced by precomputed outputs, so only the mix is timed), forward and
forward + backward, for each available backend: ``reference`` (plain PyTorch, grouped),
and on CUDA ``triton-rows`` (the row-by-row kernels) and ``triton-grouped``. ``--layers
L ...`` times stacks of those depths at each preset's width instead of its own depth.
Prints the time, the bytes the row-by-row and the grouped fused mix must move, the
achieved bandwidth (of the bytes its own scheme moves) against a plain torch copy
measured in the same run, and the ratio to the reference; on CUDA also the peak memory.

    python tools/bench_mix.py --model-only --seq-len 2048     # the model, any machine
    python tools/bench_mix.py --layers 24 48                  # CUDA: every backend
    python tools/bench_mix.py --presets tiny --tokens 2048 --repeats 3   # CPU: reference

The training-step overhead of Ancre over cascaded is measured by tools/bench_step.py.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ancre.config import ModelConfig
from ancre.kernels import reference_backend, triton_unavailable
from ancre.kernels.traffic import HBM_BYTES_PER_S, grouped_traffic, mix_traffic
from ancre.model import PRESETS, AncreTopology, resolve_shape
from ancre.train.flops import PEAK_BF16_FLOPS, shape_flops_per_token


def synchronize(device: torch.device) -> None:
    """Waits for the device's queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def copy_bandwidth(device: torch.device, megabytes: int = 1024) -> float:
    """Bytes/s of a torch copy of a large tensor (read + write)."""
    source = torch.empty(megabytes * 2**20 // 2, dtype=torch.bfloat16, device=device)
    target = torch.empty_like(source)
    target.copy_(source)
    synchronize(device)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        target.copy_(source)
        synchronize(device)
        times.append(time.perf_counter() - started)
    return 2 * source.numel() * source.element_size() / min(times)


def time_stack(backend, num_layers, tokens, hidden, device, dtype, repeats):
    """Median forward and forward+backward seconds of the mix stack, and peak memory."""
    topology = AncreTopology(num_layers, backend, temperature=0.01).to(device)
    ys = [torch.randn(tokens, hidden, device=device, dtype=dtype) for _ in range(num_layers)]
    h0 = torch.randn(tokens, hidden, device=device, dtype=dtype, requires_grad=True)
    for y in ys:
        y.requires_grad_(True)
    blocks = [lambda h, y=y: y for y in ys]  # y_j precomputed: only the mix is timed

    def forward() -> torch.Tensor:
        return topology(blocks, h0)[-1]

    fwd, both = [], []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(repeats + 1):
        synchronize(device)
        started = time.perf_counter()
        with torch.no_grad():
            forward()
        synchronize(device)
        fwd.append(time.perf_counter() - started)
        started = time.perf_counter()
        forward().float().sum().backward()
        synchronize(device)
        both.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    return statistics.median(fwd[1:]), statistics.median(both[1:]), peak


def print_model(args: argparse.Namespace) -> None:
    """The traffic model of every preset: bytes, bounds per GPU, share of a step."""
    element = 2 if args.dtype == "bf16" else 4
    print(f"traffic model: {args.tokens} tokens per micro-batch ({args.tokens // args.seq_len} "
          f"x {args.seq_len}), {args.dtype} states, step at {args.mfu:.0%} MFU")  # fmt: skip
    columns = " ".join(f"{d + ' us':>9} {d + ' %':>7}" for d in HBM_BYTES_PER_S)
    print(f"{'preset':<6} {'L':>3} {'D':>5} {'fwd GB':>7} {'bwd GB':>7} {columns}"
          "  (% with whole-layer recompute)")  # fmt: skip
    for preset in args.presets:
        hidden, layers = PRESETS[preset].hidden_size, PRESETS[preset].num_layers
        shape = resolve_shape(ModelConfig(preset=preset), args.vocab_size, args.seq_len)
        step_flops = shape_flops_per_token(shape, args.seq_len) * args.tokens
        cells, again = [], []
        for device, bandwidth in HBM_BYTES_PER_S.items():
            step = step_flops / (PEAK_BF16_FLOPS[device] * args.mfu)
            for recompute, out in ((False, cells), (True, again)):
                traffic = mix_traffic(layers, args.tokens, hidden, element, recompute)
                bound = traffic.total / bandwidth
                out.append(f"{bound * 1e6:9.0f} {bound / step:7.1%}")
        base = mix_traffic(layers, args.tokens, hidden, element)
        print(f"{preset:<6} {layers:>3} {hidden:>5} {base.forward / 1e9:7.2f} "
              f"{base.backward / 1e9:7.2f} " + " ".join(cells) + "  (" + " ".join(
                  c.split()[-1] for c in again) + ")")  # fmt: skip
    print(
        "us: lower bound of the mix (forward + backward) at the nominal HBM bandwidth; %: "
        "that bound as a share of the step's time at the stated MFU"
    )
    print_depths(args, element)


def print_depths(args: argparse.Namespace, element: int) -> None:
    """Row-by-row against grouped at the depths of ``--depths``, one preset's width."""
    hidden = PRESETS[args.width_preset].hidden_size
    print(f"\ndepth at the {args.width_preset} width (D={hidden}): row-by-row against grouped")
    print(f"{'L':>3} {'G':>3} {'rows GB':>8} {'grouped GB':>10} {'less':>6} "
          + " ".join(f"{d + ' rows us':>12} {d + ' grouped us':>14} {d + ' %':>10}"
                     for d in ("H100", "H200")))  # fmt: skip
    for layers in args.depths:
        config = ModelConfig(preset=args.width_preset, num_layers=layers)
        shape = resolve_shape(config, args.vocab_size, args.seq_len)
        step_flops = shape_flops_per_token(shape, args.seq_len) * args.tokens
        rows = mix_traffic(layers, args.tokens, hidden, element)
        grouped, group = grouped_traffic(layers, args.tokens, hidden, element)
        cells = []
        for device in ("H100", "H200"):
            step = step_flops / (PEAK_BF16_FLOPS[device] * args.mfu)
            row_bound, bound = rows.seconds(device), grouped.seconds(device)
            cells.append(f"{row_bound * 1e6:12.0f} {bound * 1e6:14.0f} "
                         f"{row_bound / step:4.1%}>{bound / step:4.1%}")  # fmt: skip
        print(f"{layers:>3} {group:>3} {rows.total / 1e9:8.2f} {grouped.total / 1e9:10.2f} "
              f"{rows.total / grouped.total:5.2f}x " + " ".join(cells))  # fmt: skip
    print("%: the bound as a share of the step at the stated MFU, row-by-row > grouped")


def backends(device: torch.device) -> dict[str, object]:
    """The mix backends to time here: the reference, and on CUDA both fused schemes."""
    found: dict[str, object] = {"reference": reference_backend}
    if device.type == "cuda" and not triton_unavailable():
        from ancre.kernels import grouped_triton, mix_triton  # needs triton and a GPU

        found["triton-rows"] = mix_triton.start_pass
        found["triton-grouped"] = grouped_triton.start_pass
    return found


def main() -> None:
    """Parses the arguments, measures, prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["60m", "350m", "1b"])
    parser.add_argument("--tokens", type=int, default=16384, help="tokens per micro-batch")
    parser.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--seq-len", type=int, default=2048, help="for the FLOPs of a step")
    parser.add_argument("--mfu", type=float, default=0.45, help="MFU of the step in the model")
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--model-only", action="store_true", help="print the model, time nothing")
    parser.add_argument(
        "--depths",
        nargs="+",
        type=int,
        default=[24, 48, 64],
        help="depths of the row-by-row against grouped table",
    )
    parser.add_argument("--width-preset", default="1b", help="the width of the depth table")
    parser.add_argument(
        "--layers",
        nargs="+",
        type=int,
        default=[],
        help="time stacks of these depths (default: each preset's own)",
    )
    args = parser.parse_args()
    print_model(args)
    if args.model_only:
        return

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    found = backends(device)
    bandwidth = copy_bandwidth(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{name}: copy bandwidth {bandwidth / 1e9:.0f} GB/s; {args.tokens} tokens, {args.dtype}")
    print(f"{'preset':<6} {'L':>3} {'D':>5} {'backend':<15} {'fwd ms':>8} {'fwd+bwd ms':>10} "
          f"{'GB moved':>8} {'GB/s':>6} {'x bound':>8} {'peak GB':>8} {'vs ref':>7}")  # fmt: skip
    element = torch.finfo(dtype).bits // 8
    for preset in args.presets:
        hidden = PRESETS[preset].hidden_size
        for num_layers in args.layers or [PRESETS[preset].num_layers]:
            rows = mix_traffic(num_layers, args.tokens, hidden, element)
            grouped, _ = grouped_traffic(num_layers, args.tokens, hidden, element)
            reference_time = None
            for backend_name, backend in found.items():
                fwd, both, peak = time_stack(
                    backend, num_layers, args.tokens, hidden, device, dtype, args.repeats
                )
                reference_time = reference_time or both
                moved = (rows if backend_name == "triton-rows" else grouped).total
                print(
                    f"{preset:<6} {num_layers:>3} {hidden:>5} {backend_name:<15} "
                    f"{fwd * 1e3:8.2f} {both * 1e3:10.2f} {moved / 1e9:8.2f} "
                    f"{moved / both / 1e9:6.0f} {both / (moved / bandwidth):8.2f} "
                    f"{peak / 1e9:8.2f} {reference_time / both:6.2f}x"
                )


if __name__ == "__main__":
    main()
