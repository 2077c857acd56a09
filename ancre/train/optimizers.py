"""The optimisers of ``train.optimizer``: their parameter groups, and Adam-atan2.

- ``adamw``: torch's AdamW on three groups: weight matrices (embeddings, head and the
  blocks' matrices; decayed), norms (not decayed) and topology logits (own lr).
- ``adam_atan2``: the same groups under :class:`AdamAtan2`, the epsilon-free Adam of
  Everett et al. (2024).
- ``muon``: the blocks' 2-D weight matrices under Muon (momentum orthogonalised by a
  Newton-Schulz iteration, at ``train.muon_lr``); embeddings, head, norms and topology
  logits under AdamW as above. The Muon itself is DeepSpeed's ``MuonWithAuxAdam``
  (passed in by ``ancre.train.engine``, the only importer of deepspeed), which ZeRO 1-3
  orthogonalise on whole matrices before partitioning the update; every parameter is
  tagged ``use_muon`` here, as DeepSpeed's ZeRO code reads it from the tensor.

Every group carries ``name`` and ``peak_lr`` (the schedule multiplies ``peak_lr``).
Without ZeRO, DeepSpeed steps the optimiser itself and reads its ``overflow`` flag: the
``Finite*`` classes skip the step the engine flags as non-finite (ZeRO optimisers skip
such steps themselves and accept only stock optimiser classes).

A frozen parameter (``requires_grad`` false, e.g. the topology logits after
``topology.freeze_at``) is in no group: no optimiser moves it, neither by momentum nor
by weight decay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from ancre.config import AncreConfig
from ancre.model import Transformer

ATAN2_A = 1.27
"""Scale a of Adam-atan2's update a * atan2(m_hat, b * sqrt(v_hat)) (Everett et al. 2024)."""
ATAN2_B = 1.0
"""Scale b of Adam-atan2's update: atan2(x, b) ~ x / b for small x, so a/b sets the step
of a small update relative to Adam's m_hat / sqrt(v_hat)."""


def is_muon_matrix(name: str, parameter: torch.Tensor) -> bool:
    """Whether Muon trains a parameter: a 2-D weight matrix inside a decoder block."""
    return name.startswith("blocks.") and parameter.ndim == 2


def parameter_groups(model: Transformer, config: AncreConfig) -> list[dict[str, Any]]:
    """The optimiser's groups for ``train.optimizer``; frozen parameters are left out.

    Args:
        model: The model.
        config: The run config (optimizer, lr, muon_lr, weight decay, betas, topology lr
            multiplier).

    Returns:
        The non-empty groups, each with ``name``, ``peak_lr`` and ``lr``; under muon also
        ``use_muon`` and the keys DeepSpeed's Muon reads.
    """
    train = config.train
    topology = {id(p) for p in model.topology.parameters()}
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    others = [(n, p) for n, p in named if id(p) not in topology]
    muon = train.optimizer == "muon"
    matrices = [p for n, p in others if muon and is_muon_matrix(n, p)]
    chosen = {id(p) for p in matrices}
    groups = [
        {"name": "matrices", "params": matrices, "weight_decay": train.weight_decay,
         "peak_lr": train.muon_lr},
        {"name": "weights", "params": [p for _, p in others if p.ndim >= 2 and id(p) not in chosen],
         "weight_decay": train.weight_decay, "peak_lr": train.lr},
        {"name": "norms", "params": [p for _, p in others if p.ndim < 2],
         "weight_decay": 0.0, "peak_lr": train.lr},
        {"name": "topology", "params": [p for _, p in named if id(p) in topology],
         "weight_decay": 0.0, "peak_lr": train.lr * config.topology.lr_multiplier},
    ]  # fmt: skip
    groups = [dict(group, lr=group["peak_lr"]) for group in groups if group["params"]]
    if muon:
        chosen_ids = {id(p) for p in matrices}
        for _, p in named:
            p.use_muon = id(p) in chosen_ids  # read by DeepSpeed's ZeRO 1-3 Muon code
        for group in groups:
            group["use_muon"] = group["name"] == "matrices"
            if group["use_muon"]:
                group.update(momentum=train.muon_momentum, ns_method="gram")
            else:
                group.update(betas=(train.beta1, train.beta2), eps=train.eps)
    return groups


class AdamAtan2(torch.optim.Optimizer):
    """Adam-atan2 (Everett et al. 2024): Adam with ``atan2`` in place of the epsilon.

    With bias-corrected moments m_hat = m / (1 - beta1^t) and v_hat = v / (1 - beta2^t),
    each step is::

        p <- p * (1 - lr * weight_decay)                       (decoupled, as AdamW)
        p <- p - lr * a * atan2(m_hat, b * sqrt(v_hat))

    atan2 is bounded (|update| < a * pi / 2), defined at m = v = 0, and invariant to the
    scale of the gradient, so there is no epsilon to tune. For |m_hat| << b sqrt(v_hat)
    it is (a / b) m_hat / sqrt(v_hat), Adam's step; a = 1.27, b = 1 as in the paper's
    public implementations.

    Args:
        params: Parameters or parameter groups.
        lr: Learning rate.
        betas: Decay rates of the first and second moments.
        weight_decay: Decoupled weight decay.
        a: Scale of the update.
        b: Scale of sqrt(v_hat) inside atan2.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        a: float = ATAN2_A,
        b: float = ATAN2_B,
    ) -> None:
        if lr <= 0 or not all(0 <= beta < 1 for beta in betas) or weight_decay < 0:
            raise ValueError(f"AdamAtan2: bad lr {lr}, betas {betas} or weight decay")
        defaults = {"lr": lr, "betas": betas, "weight_decay": weight_decay, "a": a, "b": b}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # noqa: D102
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                wide = torch.promote_types(p.dtype, torch.float32)  # moments at least fp32
                grad = p.grad.to(wide)  # (same shape as p)
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, dtype=wide)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=wide)
                state["step"] += 1
                t = float(state["step"])
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                m_hat = exp_avg / (1 - beta1**t)
                root_v_hat = (exp_avg_sq / (1 - beta2**t)).sqrt_()
                update = torch.atan2(m_hat, root_v_hat.mul_(group["b"]))
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update.to(p.dtype), alpha=-group["lr"] * group["a"])
        return loss


class SkipsFlaggedSteps:
    """Mixin of an optimiser whose ``step`` does nothing while ``overflow`` is set.

    Without ZeRO, DeepSpeed calls the client optimiser's ``step`` and reads ``overflow``
    to count a skipped step; the engine sets it from the gradient norm before the step.
    """

    overflow = False

    def step(self, closure=None):  # noqa: D102
        return None if self.overflow else super().step(closure)  # type: ignore[misc]


class FiniteAdamW(SkipsFlaggedSteps, torch.optim.AdamW):
    """AdamW that skips the step it is told has non-finite gradients."""


class FiniteAdamAtan2(SkipsFlaggedSteps, AdamAtan2):
    """Adam-atan2 that skips the step it is told has non-finite gradients."""


def build_optimizer(
    model: Transformer,
    config: AncreConfig,
    muon: Callable[[list[dict[str, Any]]], torch.optim.Optimizer],
) -> torch.optim.Optimizer:
    """The optimiser of ``train.optimizer`` over :func:`parameter_groups`.

    Args:
        model: The model.
        config: The run config.
        muon: Builds the Muon optimiser from the groups (DeepSpeed's ``MuonWithAuxAdam``,
            with :class:`SkipsFlaggedSteps` mixed in without ZeRO).

    Returns:
        The optimiser; without ZeRO one that skips flagged steps.
    """
    train = config.train
    groups = parameter_groups(model, config)
    if train.optimizer == "muon":
        return muon(groups)
    finite = train.zero_stage == 0  # ZeRO accepts stock classes and skips steps itself
    if train.optimizer == "adam_atan2":
        atan2 = FiniteAdamAtan2 if finite else AdamAtan2
        return atan2(groups, lr=train.lr, betas=(train.beta1, train.beta2))
    adamw = FiniteAdamW if finite else torch.optim.AdamW
    return adamw(groups, lr=train.lr, betas=(train.beta1, train.beta2), eps=train.eps)
