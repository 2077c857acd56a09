"""The base of every topology kind: the cascaded wiring (no mix), and the mix of a matrix.

A kind is a subclass that overrides :meth:`Topology.weights` (its connection matrix P),
says how it is built from the config (:meth:`Topology.from_config`) and what it is
(``FORMULA``, ``MATRIX``): each kind writes its own formula into its snapshots.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ancre.config import TopologyConfig
from ancre.kernels import MixBackend, Mixer
from ancre.model.topology.forms import FORMS, FORMULAS, mix_weights, stream_reads
from ancre.model.topology.freeze import FrozenWiring
from ancre.snapshot import TopologySnapshot

MIX_RANGE = "ancre.topology_mix"
"""The name of the mix's range in a profiler trace (``train.profile``)."""

Block = Callable[..., torch.Tensor]


class Topology(nn.Module):
    """The cascaded wiring, and the base of every learned or fixed wiring.

    Subclasses override :meth:`weights` to return a connection matrix.

    Attributes:
        num_layers: L, the number of blocks the topology wires.
        parameterisation: Name written into snapshots.
        temperature: Softmax temperature, or None where there is no softmax.
        wiring: The frozen matrix and its kept edges once frozen (ancre.model.topology.freeze).
        frozen_at: The step the matrix was frozen at, or None.
        form: How the mix enters the stream (``ancre.model.topology.forms``).
        gates: (L,) fp32 g_j of the gated form (learned, 0 at step 0), else None.
    """

    parameterisation = "cascaded"
    FORMULA = "h_{j+1} = y_j"
    """The kind's formula in the additive form (y_j = Block_j(h_j)), for its snapshots."""
    MATRIX: str | None = None
    """What P is, for the kinds that take a ``topology.form`` (joined to its formula)."""
    OPTIONS: tuple[str, ...] = ()
    """The ``topology`` keys the kind reads, beyond kind and backend."""
    MULTIWAY = False
    """Whether the kind feeds blocks four inputs (``ancre.model.multiway``), so the blocks
    are built with key and value norms of their own."""
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

    @classmethod
    def from_config(
        cls, config: TopologyConfig, num_layers: int, mix: MixBackend, hidden_size: int, eps: float
    ) -> Topology:
        """The kind built from the ``topology`` section (what ``OPTIONS`` names).

        Args:
            config: The ``topology`` section.
            num_layers: L, the number of blocks to wire.
            mix: The mix backend.
            hidden_size: D, for the kinds whose parameters depend on it.
            eps: The model's RMSNorm epsilon, for the kinds that normalise.
        """
        return cls(num_layers, mix)

    def formula(self) -> str:
        """How this wiring computes the stream, in its form (written into snapshots)."""
        if self.form != "additive" and self.MATRIX is not None:
            return f"{FORMULAS[self.form]},  {self.MATRIX}"
        return self.FORMULA

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

        h_{j+1} = y_j + sum_i W[j, i] h_i (``ancre.model.topology.forms``); differentiable in the
        logits and gates.
        """
        weights = self.weights()
        if weights is None:
            return None
        return mix_weights(weights, self.form, self.gates)

    def reads(self) -> torch.Tensor:
        """(1, L+1, L+1): the inputs of the blocks over the embeddings and block outputs.

        The reads matrix of ``ancre.model.topology.effective``, from the mix weights (fp64).
        """
        weights = self.mix_weights()
        if weights is None:
            weights = torch.zeros(self.num_layers, self.num_layers + 1)
        return stream_reads(weights.detach().double().cpu()).unsqueeze(0)

    def share_reads(self) -> torch.Tensor:
        """The reads the depth statistics split the final state by (``ancre.model.depth_stats``).

        :meth:`reads`, or, for a wiring that mixes parts of the width, the reads per pair
        of parts (..., L+1, L+1, m, m).
        """
        return self.reads()

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
            if mixer is None:
                states.append(y)
                continue
            with torch.profiler.record_function(MIX_RANGE):  # the mix's range in a trace
                states.append(mixer(j, y, states))
        return states

    def mixer(self, weights: torch.Tensor) -> Mixer:
        """The mixer of one forward pass: the backend's, or the frozen wiring's."""
        if self.wiring is None:
            return self.mix(weights)
        return self.wiring.mixer(self.gates, self.mix)

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
            formula=self.formula(),
        )

    def extra_repr(self) -> str:
        """Shown by print(model)."""
        text = f"num_layers={self.num_layers}, parameterisation={self.parameterisation}"
        return text if self.form == "additive" else f"{text}, form={self.form}"
