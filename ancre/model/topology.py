"""The connection matrix: how the blocks of a stack are wired together.

A stack of L blocks starts from h_0 (the embeddings). Block j reads h_j, returns
y_j = Block_j(h_j), and the topology adds a weighted sum of every earlier state::

    h_{j+1} = y_j + sum_{i=0..j} P[j, i] * h_i

P is the L x (L+1) connection matrix, zero above the diagonal. The parameterisations:

- ``cascaded``: no mix, h_{j+1} = y_j (the plain Llama); P is all zero.
- ``ancre``: P[j, :j+1] = softmax(theta_j / tau) with learnable theta_j, zero at
  initialisation (so P starts uniform); theta_0 has one entry and is frozen (P[0, 0] = 1).
- ``uniform``: P[j, i] = 1 / (j+1), frozen ("all connections, equal weight").
- ``fixed``: frozen edges ``i:j`` (weight 1, or ``i:j@w``) adding the output of layer
  i (0 = the input h_0) to the output of layer j: P[j-1, i] = w. Rows may be all zero
  (the deep-linear-network layouts of docs/method.md, such as 0:2 alone).

``topology.form`` says how the mix enters the stream (``ancre.model.forms``): the
paper's additive form above, ``replace`` (h_{j+1} = y_j - h_j + sum_i P[j, i] h_i) or
``gated`` (h_{j+1} = y_j + g_j sum_i P[j, i] h_i, g_j learned from 0); every form runs
as the additive mix with weights W computed from P.

The logits and the softmax stay in fp32 whatever precision the blocks run in. The
topology works on any sequence of blocks that map a state to a state of the same shape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ancre.config import ConfigError, TopologyConfig
from ancre.kernels import MixBackend, Mixer
from ancre.kernels.reference import accumulation_dtype
from ancre.model.forms import FORMS, mix_weights, predecessor_logits, stream_reads
from ancre.model.freeze import FrozenWiring, prune_matrix
from ancre.snapshot import TopologySnapshot

Block = Callable[..., torch.Tensor]


class Topology(nn.Module):
    """The cascaded wiring, and the base of every learned or fixed wiring.

    Subclasses override :meth:`weights` to return a connection matrix.

    Attributes:
        num_layers: L, the number of blocks the topology wires.
        parameterisation: Name written into snapshots.
        temperature: Softmax temperature, or None where there is no softmax.
        wiring: The frozen matrix and its kept edges once frozen (ancre.model.freeze).
        frozen_at: The step the matrix was frozen at, or None.
        form: How the mix enters the stream (``ancre.model.forms``).
        gates: (L,) fp32 g_j of the gated form (learned, 0 at step 0), else None.
    """

    parameterisation = "cascaded"
    temperature: float | None = None
    mix_backend = "reference"
    """Name of the mix implementation (``ancre.kernels``), set when built from a config."""
    wiring: FrozenWiring | None = None
    frozen_at: int | None = None
    form = "additive"

    def __init__(self, num_layers: int, mix: MixBackend, form: str = "additive") -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"a topology needs at least one block, got num_layers={num_layers}")
        if form not in FORMS:
            raise ValueError(f"topology.form={form!r}; allowed: {', '.join(FORMS)}")
        self.num_layers = num_layers
        self.mix = mix
        self.form = form
        self.gates: nn.Parameter | None = None
        if form == "gated":
            self.gates = nn.Parameter(torch.zeros(num_layers, dtype=torch.float32))

    def weights(self) -> torch.Tensor | None:
        """The (L, L+1) fp32 connection matrix the forward pass uses, or None for no mix."""
        return None

    def matrix(self) -> torch.Tensor:
        """The (L, L+1) fp32 connection matrix P, detached (all zero when cascaded)."""
        weights = self.weights()
        if weights is None:
            return torch.zeros(self.num_layers, self.num_layers + 1)
        return weights.detach().float().cpu()

    def logit_rows(self) -> list[torch.Tensor] | None:
        """The raw logits as ragged rows (row j has j+1 entries), or None if there are none."""
        return None

    def mix_weights(self) -> torch.Tensor | None:
        """The (L, L+1) weights W of the additive mix that computes this form, or None.

        h_{j+1} = y_j + sum_i W[j, i] h_i (``ancre.model.forms``); differentiable in the
        logits and gates.
        """
        weights = self.weights()
        if weights is None:
            return None
        return mix_weights(weights, self.form, self.gates)

    def reads(self) -> torch.Tensor:
        """(1, L+1, L+1): the inputs of the blocks over the embeddings and block outputs.

        The reads matrix of ``ancre.model.effective``, from the mix weights (fp64).
        """
        weights = self.mix_weights()
        if weights is None:
            weights = torch.zeros(self.num_layers, self.num_layers + 1)
        return stream_reads(weights.detach().double().cpu()).unsqueeze(0)

    def forward(self, blocks: Sequence[Block], h0: torch.Tensor, *block_args) -> list[torch.Tensor]:
        """Runs the blocks wired by this topology.

        Args:
            blocks: The L blocks, each called as ``block(h, *block_args)``.
            h0: The input state (..., D), e.g. the embeddings.
            *block_args: Extra arguments passed to every block (e.g. rotary tables).

        Returns:
            The L+1 states [h_0, ..., h_L].
        """
        if len(blocks) != self.num_layers:
            raise ValueError(f"topology wires {self.num_layers} blocks, got {len(blocks)}")
        weights = self.mix_weights()  # (L, L+1) fp32, or None
        mixer = None if weights is None else self.mixer(weights)
        states = [h0]
        for j, block in enumerate(blocks):
            y = block(states[-1], *block_args)  # (..., D)
            states.append(y if mixer is None else mixer(j, y, states))
        return states

    def mixer(self, weights: torch.Tensor) -> Mixer:
        """The mixer of one forward pass: the backend's, or the frozen wiring's."""
        return self.mix(weights) if self.wiring is None else self.wiring.mixer(self.gates)

    def snapshot(self, step: int, tokens: int) -> TopologySnapshot:
        """The connection matrix and logits in the snapshot format of ``ancre.snapshot``."""
        rows = self.logit_rows()
        return TopologySnapshot(
            step=step,
            tokens=tokens,
            num_layers=self.num_layers,
            parameterisation=self.parameterisation,
            temperature=self.temperature,
            logits=None if rows is None else [r.detach().cpu().tolist() for r in rows],
            matrix=self.matrix().tolist(),
            frozen_at=self.frozen_at,
            edges=None if self.wiring is None else [list(row) for row in self.wiring.edges],
            form=self.form,
            gates=None if self.gates is None else self.gates.detach().float().cpu().tolist(),
        )

    def extra_repr(self) -> str:
        """Shown by print(model)."""
        text = f"num_layers={self.num_layers}, parameterisation={self.parameterisation}"
        return text if self.form == "additive" else f"{text}, form={self.form}"


class UniformTopology(Topology):
    """Every block adds the plain average of the states before it: P[j, i] = 1/(j+1)."""

    parameterisation = "uniform"

    def __init__(self, num_layers: int, mix: MixBackend, form: str = "additive") -> None:
        super().__init__(num_layers, mix, form)
        rows = torch.arange(1, num_layers + 1, dtype=torch.float32).unsqueeze(1)  # (L, 1)
        uniform = torch.ones(num_layers, num_layers + 1).tril() / rows  # (L, L+1)
        self.register_buffer("uniform", uniform, persistent=False)

    def weights(self) -> torch.Tensor:
        """The frozen (L, L+1) uniform matrix."""
        return self.uniform.to(accumulation_dtype(self.uniform.dtype))


class AncreTopology(Topology):
    """Learned rows: P[j, :j+1] = softmax(theta_j / tau), theta zero at initialisation.

    The learnable logits are one flat fp32 parameter holding theta_1 .. theta_{L-1}
    row after row (L(L+1)/2 - 1 numbers: 299 at L = 24); theta_0 is the frozen 0.
    With ``init="predecessor"`` row j starts with ``predecessor_weight`` on h_j and the
    rest shared equally (``ancre.model.forms.predecessor_logits``).
    """

    parameterisation = "softmax"

    def __init__(
        self,
        num_layers: int,
        mix: MixBackend,
        temperature: float,
        form: str = "additive",
        init: str = "uniform",
        predecessor_weight: float = 0.9,
    ) -> None:
        super().__init__(num_layers, mix, form)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if init not in ("uniform", "predecessor"):
            raise ValueError(f"topology.init={init!r}; allowed: uniform, predecessor")
        self.temperature = temperature
        self.init = init
        num_entries = num_layers * (num_layers + 1) // 2
        logits = torch.zeros(num_entries - 1, dtype=torch.float32)
        if init == "predecessor":
            logits = predecessor_logits(num_layers, temperature, predecessor_weight)
        self.logits = nn.Parameter(logits)
        rows, cols = torch.tril_indices(num_layers, num_layers + 1)  # row-major, i <= j
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)

    def _all_logits(self) -> torch.Tensor:
        """theta_0 (frozen 0) followed by the learnable logits, at least fp32, (L(L+1)/2,)."""
        logits = self.logits.to(accumulation_dtype(self.logits.dtype))
        return torch.cat([logits.new_zeros(1), logits])

    def weights(self) -> torch.Tensor:
        """The (L, L+1) softmax matrix (fp32 or wider), differentiable in the logits.

        Once frozen, the constant frozen matrix.
        """
        if self.wiring is not None:
            return self.wiring.matrix
        with torch.autocast(device_type=self.logits.device.type, enabled=False):
            n = self.num_layers
            logits = self._all_logits()  # (L(L+1)/2,)
            scores = logits.new_full((n, n + 1), float("-inf"))
            scores = scores.index_put((self.rows, self.cols), logits)  # (L, L+1)
            return torch.softmax(scores / self.temperature, dim=-1)  # (L, L+1), zero above diag

    def freeze(self, step: int, prune: str = "none", k: int = 1, mass: float = 1.0) -> FrozenWiring:
        """Fixes the matrix at its current value, pruned (``ancre.model.freeze``).

        The logits (and the gated form's gates) stop requiring gradients; the forward
        pass reads only the kept edges.
        Call it after the model has moved to its device.

        Args:
            step: The step the matrix is frozen at (written into snapshots).
            prune: ``none``, ``top_k`` or ``mass``.
            k: Entries kept per row with ``top_k``.
            mass: Fraction of each row kept with ``mass``.

        Returns:
            The frozen wiring.
        """
        with torch.no_grad():
            matrix = prune_matrix(self.weights().detach(), prune, k, mass)  # (L, L+1)
        self.wiring = FrozenWiring.of(matrix, self.form)
        self.frozen_at = step
        self.logits.requires_grad_(False)
        if self.gates is not None:
            self.gates.requires_grad_(False)
        return self.wiring

    def logit_rows(self) -> list[torch.Tensor]:
        """theta_0 .. theta_{L-1} as ragged rows."""
        sizes = list(range(1, self.num_layers + 1))
        return list(self._all_logits().detach().split(sizes))

    def extra_repr(self) -> str:
        """Shown by print(model)."""
        return f"{super().extra_repr()}, temperature={self.temperature}"


class FixedTopology(Topology):
    """Frozen edges: P[j-1, i] = w for every edge i:j of weight w, zero elsewhere."""

    parameterisation = "fixed"

    def __init__(
        self,
        num_layers: int,
        mix: MixBackend,
        edges: list[tuple[int, int, float]],
        form: str = "additive",
    ) -> None:
        super().__init__(num_layers, mix, form)
        matrix = torch.zeros(num_layers, num_layers + 1)  # (L, L+1)
        for source, target, weight in edges:
            matrix[target - 1, source] += weight
        self.register_buffer("fixed", matrix, persistent=False)
        self.edges = edges

    def weights(self) -> torch.Tensor:
        """The frozen (L, L+1) matrix of the edges."""
        return self.fixed.to(accumulation_dtype(self.fixed.dtype))


def parse_edges(text: str, num_layers: int) -> list[tuple[int, int, float]]:
    """Parses ``topology.edges`` ("0:2,2:3" or "0:2@0.5,...") for a stack of L layers.

    Args:
        text: Comma-separated edges i:j or i:j@weight.
        num_layers: L; an edge may go from 0..L-1 to 1..L, forwards only.

    Returns:
        (source i, target j, weight) triples.

    Raises:
        ConfigError: An edge is malformed, points backwards, or goes past layer L.
    """
    edges = []
    for item in (part.strip() for part in text.split(",")):
        spec, _, weight = item.partition("@")
        source, colon, target = spec.partition(":")
        try:
            edge = (int(source), int(target), float(weight) if weight else 1.0)
        except ValueError:
            raise ConfigError("topology.edges", f"{item!r} is not i:j or i:j@weight") from None
        if not colon:
            raise ConfigError("topology.edges", f"{item!r} is not i:j or i:j@weight")
        if not 0 <= edge[0] < edge[1]:
            raise ConfigError(
                "topology.edges", f"{item!r} points backwards: an edge i:j needs 0 <= i < j"
            )
        if edge[1] > num_layers:
            raise ConfigError("topology.edges", f"{item!r} goes past the last layer ({num_layers})")
        edges.append(edge)
    return edges


def freeze_due(topology: Topology, config: TopologyConfig, step: int) -> bool:
    """Whether :func:`freeze_if_due` would freeze now (reads no parameter: no gather)."""
    due = bool(config.freeze_at) and step >= config.freeze_at
    return due and isinstance(topology, AncreTopology) and topology.wiring is None


def freeze_if_due(topology: Topology, config: TopologyConfig, step: int) -> FrozenWiring | None:
    """Freezes (and prunes) an Ancre matrix once ``step`` reaches ``topology.freeze_at``.

    The logits do not change after the freeze, so the matrix recomputed from them at any
    later step (a resumed run, a converted checkpoint) is the one frozen at freeze_at.

    Args:
        topology: The model's topology (its logits whole, not ZeRO-3 partitions).
        config: The ``topology`` section.
        step: Optimiser steps taken.

    Returns:
        The wiring when it froze now, else None (not due, no freeze, already frozen).
    """
    if not freeze_due(topology, config, step):
        return None
    assert isinstance(topology, AncreTopology)
    return topology.freeze(config.freeze_at, config.prune, config.prune_k, config.prune_mass)
