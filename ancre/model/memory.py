"""What autograd keeps for the backward pass: the activation memory of a forward pass.

Counted device-independently by hooking the tensors autograd saves and summing the
distinct storages behind them, so the ratio between two wirings (Ancre against
cascaded) can be measured on a CPU and holds on a GPU.
"""

from __future__ import annotations

import torch

from ancre.model.transformer import Transformer


def saved_for_backward_bytes(
    model: Transformer, tokens: torch.Tensor, targets: torch.Tensor, autocast: bool = True
) -> int:
    """Bytes of the distinct storages autograd saves in one forward pass with a loss.

    Args:
        model: The model (in training mode, so recomputation applies).
        tokens: Input ids (B, T).
        targets: Target ids (B, T).
        autocast: Run under bf16 autocast, as ``train.precision: bf16`` does.

    Returns:
        The bytes, parameters excluded (they are held anyway).
    """
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    device = tokens.device.type
    with (
        torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
        torch.autocast(device, dtype=torch.bfloat16, enabled=autocast),
    ):
        loss = model(tokens, targets)
    del loss
    return sum(kept.values())
