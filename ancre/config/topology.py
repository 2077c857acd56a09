"""The topology section of the run configuration: which wiring, and how it is learned.

This module imports nothing else from ``ancre`` but the config package.
"""

from __future__ import annotations

from dataclasses import dataclass

from ancre.config.checks import ConfigError, choice, non_negative, positive

TOPOLOGY_KINDS = (
    "cascaded", "ancre", "uniform", "fixed", "denseformer", "hyper", "mhc", "attnres", "mudd",
)  # fmt: skip
MIX_BACKENDS = ("auto", "reference", "triton")
PRUNE_MODES = ("none", "top_k", "mass")
TOPOLOGY_FORMS = ("additive", "replace", "gated", "delta")
ROW_INITS = ("uniform", "predecessor")
TOPOLOGY_OPTIONS = {
    "form": ("ancre", "uniform", "fixed", "attnres"), "init": ("ancre",),
    "predecessor_weight": ("ancre",),
    "dilation": ("denseformer",), "period": ("denseformer",), "streams": ("hyper", "mhc"),
    "dynamic": ("hyper", "mhc"), "sinkhorn_iters": ("mhc",), "attnres_blocks": ("attnres",),
    "window": ("mudd",), "fractions": ("hyper",),
}  # fmt: skip
"""The topology keys that only some kinds read, and those kinds."""


@dataclass(frozen=True)
class TopologyConfig:
    """The residual wiring: the L x (L+1) connection matrix."""

    kind: str = "ancre"
    """cascaded (plain Llama), ancre (learned softmax rows), uniform (frozen 1/(j+1)),
    fixed (the frozen edges of topology.edges), or one of the learned residual wirings of
    other papers (docs/topologies.md): denseformer (depth-weighted averages), hyper
    (Hyper-Connections), mhc (manifold-constrained Hyper-Connections) or attnres
    (Attention Residuals) or mudd (MUDDFormer's multiway dynamic dense connections)."""
    edges: str = ""
    """For kind fixed: comma-separated edges i:j (or i:j@weight, default weight 1), each
    adding the output of layer i (0 = the input) to the output of layer j, e.g. "0:2,2:3";
    or a pattern for any depth, the speedrun's wirings with topology.form=gated: x0 (the
    embeddings into every block's input) or unet (the output of block L/2 - 1 - m into
    the input of block L/2 + m)."""
    temperature: float = 1e-2
    """Softmax temperature tau of the ancre rows: P[j] = softmax(theta_j / tau)."""
    form: str = "additive"
    """How the mix of earlier states enters the stream (kinds ancre, uniform, fixed;
    docs/method.md): additive (the paper's, h_{j+1} = y_j + sum_i P[j, i] h_i), replace
    (the mix replaces the block's own identity path, h_{j+1} = y_j - h_j + sum_i
    P[j, i] h_i, so P one-hot on h_j is the plain residual) or gated (h_{j+1} = y_j +
    g_j sum_i P[j, i] h_i with a learned g_j per block, 0 at step 0). Kind attnres takes
    additive (the paper's), gated (h_{j+1} = y_j + g_j (AttnRes_j - y_j), g_j = 0 at
    step 0: the plain residual network until the gates open) or delta (Delta Attention
    Residuals: block j+1 reads s_{j+1} + AttnRes_j while the stream s_{j+1} = s_j +
    v_{j+1} stays the plain sum of the updates)."""
    init: str = "uniform"
    """For kind ancre: the matrix at step 0. uniform (theta = 0: P[j, i] = 1/(j+1)) or
    predecessor (P[j, j] = topology.predecessor_weight, the rest shared equally)."""
    predecessor_weight: float = 0.9
    """With init predecessor: the weight P[j, j] of each block's own input at step 0,
    in (0, 1); 1 - it is shared equally by the earlier states."""
    lr_multiplier: float = 1.0
    """Learning rate of the topology logits as a multiple of train.lr. For ancre, only
    train.lr x lr_multiplier / temperature matters under Adam-type optimisers; 0.03 to
    0.3 did equally well at every shape measured (docs/science.md)."""
    backend: str = "auto"
    """Implementation of the weighted sum: reference (plain PyTorch), triton (fused
    kernels; CUDA) or auto (triton on CUDA when it imports, else reference)."""
    dilation: int = 1
    """For kind denseformer: each average reads the outputs whose depth differs from its
    own by a multiple of this (the paper's k; 1 reads every earlier output)."""
    period: int = 1
    """For kind denseformer: a depth-weighted average after every this-many blocks only
    (the paper's p; 1 after every block)."""
    streams: int = 4
    """For kinds hyper and mhc: n, the number of parallel residual streams."""
    fractions: int = 1
    """For kind hyper with topology.streams=1: m > 1 cuts the one stream into m fractions
    of equal width (Frac-Connections, expansion rate 1/m); it must divide model.hidden_size."""
    dynamic: bool = False
    """For kinds hyper and mhc: add the input-dependent (dynamic) part of the connection
    weights to the static one."""
    sinkhorn_iters: int = 20
    """For kind mhc: Sinkhorn-Knopp iterations projecting the stream-mixing matrix onto
    the doubly stochastic matrices."""
    attnres_blocks: int = 0
    """For kind attnres: 0 attends over every earlier block output (Full AttnRes); N > 0
    groups the blocks into N groups of equal size whose outputs are summed and attended
    over as one (Block AttnRes); N must divide the number of blocks."""
    window: int = 0
    """For kind mudd: 0 mixes every earlier block's output into each block's four inputs;
    k > 0 only the embeddings and the outputs of the last k blocks (MUDDFormer-SWk)."""
    freeze_at: int = 0
    """For kind ancre: after this many optimiser steps the learned matrix is frozen
    (pruned by topology.prune); the logits then get no gradient and no update, and the
    mix reads only the kept states (ancre/model/topology/freeze.py). 0 never freezes."""
    prune: str = "none"
    """At the freeze, what each row keeps (renormalised to sum to one): none (every
    entry), top_k (its topology.prune_k largest) or mass (its fewest largest entries
    that reach topology.prune_mass of the row)."""
    prune_k: int = 2
    """With prune top_k: entries kept per row (rows with fewer keep all of theirs)."""
    prune_mass: float = 0.9
    """With prune mass: the fraction of each row's weight the kept entries reach, in
    (0, 1]."""

    def check(self) -> None:
        """Raises ConfigError naming the first field of this section that is not allowed."""
        choice("topology.kind", self.kind, TOPOLOGY_KINDS)
        choice("topology.backend", self.backend, MIX_BACKENDS)
        positive("topology.temperature", self.temperature)
        if self.kind == "fixed" and not self.edges.strip():
            raise ConfigError("topology.edges", 'kind fixed needs edges, e.g. "0:2,2:3"')
        non_negative("topology.lr_multiplier", self.lr_multiplier)
        choice("topology.form", self.form, TOPOLOGY_FORMS)
        if self.kind == "attnres" and self.form == "replace":
            raise ConfigError("topology.form", "kind attnres takes additive, gated or delta")
        if self.form == "delta" and self.kind != "attnres":
            raise ConfigError(
                "topology.form",
                f"delta (Delta Attention Residuals) is kind attnres's; kind {self.kind} takes "
                "additive, replace or gated",
            )
        choice("topology.init", self.init, ROW_INITS)
        if not 0.0 < self.predecessor_weight < 1.0:
            raise ConfigError(
                "topology.predecessor_weight", f"is {self.predecessor_weight}; allowed: (0, 1)"
            )
        if self.predecessor_weight != 0.9 and self.init != "predecessor":
            raise ConfigError(
                "topology.predecessor_weight",
                f"is read only with topology.init=predecessor, and topology.init is {self.init}",
            )
        self._check_kind_options()
        self._check_freeze()

    def _check_freeze(self) -> None:
        """freeze_at and prune: only for a learned matrix (the run's length: the root)."""
        choice("topology.prune", self.prune, PRUNE_MODES)
        positive("topology.prune_k", self.prune_k)
        if not 0.0 < self.prune_mass <= 1.0:
            raise ConfigError("topology.prune_mass", f"is {self.prune_mass}; allowed: (0, 1]")
        non_negative("topology.freeze_at", self.freeze_at)
        if self.freeze_at and self.kind != "ancre":
            raise ConfigError(
                "topology.freeze_at",
                f"is {self.freeze_at} with topology.kind={self.kind}, whose matrix is "
                "never learned; freezing applies to kind ancre (or set freeze_at=0)",
            )
        if self.prune != "none" and not self.freeze_at:
            raise ConfigError(
                "topology.prune", f"is {self.prune}: pruning happens at the freeze; set "
                "topology.freeze_at to a step",
            )  # fmt: skip

    def _check_kind_options(self) -> None:
        """Options of the learned-wiring kinds: in range, and set only for a kind reading them."""
        for key in ("dilation", "period", "streams", "sinkhorn_iters", "fractions"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(
                    f"topology.{key}", f"is {value!r}; it must be a whole number >= 1"
                )
        for key in ("attnres_blocks", "window"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"topology.{key}", f"is {value!r}; it must be 0 or more")
        defaults = TopologyConfig()
        for key, kinds in TOPOLOGY_OPTIONS.items():
            if self.kind not in kinds and getattr(self, key) != getattr(defaults, key):
                raise ConfigError(
                    f"topology.{key}",
                    f"is read only by kind {' or '.join(kinds)}, and topology.kind is "
                    f"{self.kind}: remove the key or change the kind",
                )
        if self.fractions > 1 and self.streams != 1:
            raise ConfigError(
                "topology.fractions",
                f"is {self.fractions} with topology.streams={self.streams}; Frac-Connections "
                "cut one stream into fractions: set topology.streams=1",
            )
