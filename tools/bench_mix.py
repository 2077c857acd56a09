"""The topology mix alone: fused Triton kernels against the reference loop, in one run.

For each preset, a stack of L mixes over a micro-batch of ``--tokens`` x hidden states
(the blocks replaced by precomputed outputs, so only the mix is timed), forward and
forward + backward, for each available backend. Prints the time, the bytes the mix
must move (forward: y, h_0..h_j and h_{j+1} per block; the column backward about as
much again), the achieved bandwidth against a plain torch copy measured in the same
run, and the fused/reference ratio; on CUDA also the peak memory.

    python tools/bench_mix.py                          # CUDA: reference and triton
    python tools/bench_mix.py --presets tiny --tokens 2048 --repeats 3   # CPU: reference

The training-step overhead of Ancre over cascaded is measured by tools/bench_step.py.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ancre.kernels import select_mix, triton_unavailable
from ancre.model import PRESETS, AncreTopology


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


def mix_bytes(num_layers: int, state_bytes: int) -> tuple[int, int]:
    """Bytes the forward and the column backward must move at least."""
    forward = sum((j + 1) + 2 for j in range(num_layers)) * state_bytes
    backward = sum((num_layers - c) + 3 for c in range(num_layers + 1)) * state_bytes
    return forward, backward


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


def main() -> None:
    """Parses the arguments, measures, prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["60m", "350m", "1b"])
    parser.add_argument("--tokens", type=int, default=16384, help="tokens per micro-batch")
    parser.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    backends = ["reference"] + (
        ["triton"] if device.type == "cuda" and not triton_unavailable() else []
    )
    bandwidth = copy_bandwidth(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{name}: copy bandwidth {bandwidth / 1e9:.0f} GB/s; {args.tokens} tokens, {args.dtype}")
    print(f"{'preset':<6} {'L':>3} {'D':>5} {'backend':<9} {'fwd ms':>8} {'fwd+bwd ms':>10} "
          f"{'GB/s':>6} {'x bound':>8} {'peak GB':>8} {'vs ref':>7}")  # fmt: skip
    for preset in args.presets:
        hidden, _, _, num_layers = PRESETS[preset]
        state_bytes = args.tokens * hidden * torch.finfo(dtype).bits // 8
        forward_bytes, backward_bytes = mix_bytes(num_layers, state_bytes)
        bound = (forward_bytes + backward_bytes) / bandwidth
        reference_time = None
        for backend_name in backends:
            _, backend = select_mix(backend_name)
            fwd, both, peak = time_stack(
                backend, num_layers, args.tokens, hidden, device, dtype, args.repeats
            )
            reference_time = reference_time or both
            print(
                f"{preset:<6} {num_layers:>3} {hidden:>5} {backend_name:<9} {fwd * 1e3:8.2f} "
                f"{both * 1e3:10.2f} {(forward_bytes + backward_bytes) / both / 1e9:6.0f} "
                f"{both / bound:8.2f} {peak / 1e9:8.2f} {reference_time / both:6.2f}x"
            )


if __name__ == "__main__":
    main()
