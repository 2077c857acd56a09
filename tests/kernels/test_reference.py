import torch

from ancre.kernels import reference_backend, select_mix
from ancre.kernels.reference import lean_mix, mix


def test_mix_is_the_weighted_sum():
    y = torch.randn(2, 3, 4)
    states = [torch.randn(2, 3, 4) for _ in range(3)]
    w = torch.tensor([0.2, 0.3, 0.5])
    torch.testing.assert_close(
        mix(y, states, w), y + 0.2 * states[0] + 0.3 * states[1] + 0.5 * states[2]
    )


def test_gradcheck_in_float64():
    y = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    states = [torch.randn(3, 5, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    w = torch.rand(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda y, w, *s: mix(y, s, w), (y, w, *states))


def test_bf16_states_accumulate_in_fp32():
    # bf16 spaces values 2 apart near 256: adding 0.5 four times one by one in bf16 rounds
    # every addition away (256), while an fp32 accumulator reaches 258, a bf16 value.
    y = torch.full((4,), 256.0, dtype=torch.bfloat16)
    states = [torch.ones(4, dtype=torch.bfloat16)] * 4
    out = mix(y, states, torch.full((4,), 0.5))
    assert out.dtype == torch.bfloat16
    assert torch.all(out == 258.0)


def test_weights_must_match_states():
    try:
        mix(torch.ones(2), [torch.ones(2)], torch.ones(2))
    except ValueError as error:
        assert "1 states need 1 weights" in str(error)
    else:
        raise AssertionError("a weight count mismatch was accepted")


def test_auto_selects_reference_without_a_gpu():
    name, backend = select_mix("auto")
    assert name == "reference" and backend is reference_backend


def lean_and_plain(dtype):
    torch.manual_seed(0)
    base = [torch.randn(2, 7, 16).to(dtype) for _ in range(4)]
    weights = torch.rand(3, dtype=torch.float32)
    results = []
    for fn in (mix, lean_mix):
        y, *states = [t.clone().requires_grad_(True) for t in base]
        w = weights.clone().requires_grad_(True)
        out = fn(y, states, w)
        (out.float() * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append([out, y.grad, w.grad, *[s.grad for s in states]])
    return results


def test_lean_mix_gives_the_specs_values_and_gradients_bit_for_bit():
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        plain, lean = lean_and_plain(dtype)
        for a, b in zip(plain, lean, strict=True):
            assert a.dtype == b.dtype and torch.equal(a, b), dtype


def saved_bytes(fn, dtype) -> int:
    """Bytes of the distinct storages autograd keeps for backward, beyond the inputs."""
    y, *states = [torch.randn(4, 64, 32).to(dtype).requires_grad_(True) for _ in range(5)]
    weights = torch.rand(4, requires_grad=True)
    inputs = {t.untyped_storage().data_ptr() for t in [y, weights, *states]}
    kept: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in inputs:
            kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(y, states, weights)
    return sum(kept.values())


def test_lean_mix_keeps_no_fp32_copies_of_the_states():
    assert saved_bytes(mix, torch.bfloat16) >= 4 * 4 * 64 * 32 * 4  # an fp32 copy per state
    assert saved_bytes(lean_mix, torch.bfloat16) == 0
