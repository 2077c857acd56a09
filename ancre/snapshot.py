"""The topology snapshot: the connection matrix of a run at one step, as versioned JSON.

A snapshot is readable with the standard library alone (numpy optional), so tools can
inspect a copied run folder without torch::

    {"format": "ancre-topology", "version": 2, "step": 1000, "tokens": 131072000,
     "num_layers": 8, "parameterisation": "softmax", "temperature": 0.01,
     "logits": [[0.0], [a, b], ...],      # ragged, row j has j+1 entries; null if none
     "matrix": [[1.0, 0, ...], ...],      # L x (L+1), zeros above the diagonal
     "frozen_at": 500,                    # step the matrix was frozen at; null if not
     "edges": [[0], [0, 1], [2], ...]}    # once frozen: the states each row reads

Row j of ``matrix`` holds the weights P[j, 0..j] that block j puts on the states
h_0 (the embeddings) .. h_j: the matrix the forward pass uses (once frozen, the
frozen and pruned one; ``logits`` stay those it was frozen from). Parameterisations:
``softmax`` (learned Ancre rows), ``uniform`` (frozen 1/(j+1)), ``cascaded`` (no mix:
the matrix is all zero) and ``fixed`` (frozen edges; rows need not sum to one).

Version 2 adds optional fields. A learned matrix frozen at a step
(``topology.freeze_at``) records it::

     "frozen_at": 500,                     # the step the matrix was frozen at
     "edges": [[0], [0, 1], ...],          # the states each row reads once pruned

and the wirings of other papers (``denseformer``, ``hyper``, ``mhc``, ``attnres``:
``ancre.model.topology.effective``), whose matrix is their effective P, written
``h_{j+1} = d_j y_j + sum_i P[j, i] h_i``, add::

     "own_output": [d_0, ..., d_{L-1}],   # weight of each block's own output
     "reads": [[...], ...],                # (L+1) x (L+1): inputs over x_0 (embeddings)
                                           #   and the block outputs x_{i+1} = y_i
     "spread": [[...], ...] or null,       # std of P over the probe (input-dependent)
     "probe": "..." or null,               # what the average was taken over
     "raw": {"name": nested lists, ...}    # the kind's parameters

Version 3 adds the form of the mix (``topology.form``, ``ancre.model.topology.forms``) and the
gated form's gates::

     "form": "additive",                   # additive, replace, gated (delta: attnres)
     "gates": [g_0, ..., g_{L-1}] or null  # the gated form's learned g_j

``matrix`` stays P; the forward pass computes the form from it.

Version 4 adds the formula, written by the kind itself (``ancre.model.topology``), so a
new kind needs nothing here::

     "formula": "h_{j+1} = y_j + sum_{i<=j} softmax(theta_j / tau)_i h_i"

Older versions are read with the formula of their parameterisation and form
(:func:`legacy_formula`); versions 1 and 2 as the additive form, version 1 files (none
of them) as never frozen.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ancre.atomic import write_json_atomic

FORMAT = "ancre-topology"
VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
FORMS = ("additive", "replace", "gated", "delta")
ROW_SUMS = {"softmax": 1.0, "uniform": 1.0, "cascaded": 0.0}
"""What every row of P sums to for the parameterisations whose rows are fixed in sum;
the others (fixed edges, the wirings of other papers) are not checked."""
LEGACY_FORMULAS = {
    "cascaded": "h_{j+1} = y_j",
    "softmax": "h_{j+1} = y_j + sum_{i<=j} softmax(theta_j / tau)_i h_i",
    "uniform": "h_{j+1} = y_j + sum_{i<=j} h_i / (j+1)",
    "fixed": "h_{j+1} = y_j + sum_{i<=j} P[j, i] h_i, P from the edges",
    "denseformer": "h_{j+1} = sum_{i<=j+1} alpha_{j+1,i} x_i  (x_0 = embeddings, x_{i+1} = y_i)",
    "hyper": "h_j = A_m^T H_j;  H_{j+1} = A_r^T H_j + B^T (y_j - h_j);  the head reads sum_s H_s",
    "mhc": "h_j = sigma(pre)^T H_j;  H_{j+1} = Sinkhorn(res) H_j + 2 sigma(post)^T (y_j - h_j)",
    "attnres": "h_{j+1} = sum_i softmax_i(q_j . RMSNorm(v_i)) v_i;  v_0 = h_0, v_{i+1} = y_i - h_i",
}
"""The formulas of snapshots of versions 1 to 3, which do not carry their own; from
version 4 each kind writes its formula (``ancre.model.topology``)."""
LEGACY_FORM_FORMULAS = {
    "replace": "h_{j+1} = (y_j - h_j) + sum_{i<=j} P[j, i] h_i",
    "gated": "h_{j+1} = y_j + g_j sum_{i<=j} P[j, i] h_i",
}
LEGACY_MATRICES = {
    "softmax": "P[j] = softmax(theta_j / tau)",
    "uniform": "P[j, i] = 1 / (j+1)",
    "fixed": "P from the edges",
}
ROW_SUM_TOLERANCE = 1e-4


class SnapshotError(ValueError):
    """A snapshot file is missing, of another format or version, or inconsistent."""


@dataclass(frozen=True)
class TopologySnapshot:
    """One connection matrix with the step it was taken at.

    Attributes:
        step: Optimiser steps taken when the snapshot was made.
        tokens: Training tokens seen by then, over all processes.
        num_layers: L, the number of blocks (rows).
        parameterisation: How the matrix is made (softmax, uniform, cascaded).
        temperature: Softmax temperature, or None where no softmax is involved.
        logits: Ragged raw logits (row j has j+1 entries), or None.
        matrix: The L x (L+1) matrix P, zeros above the diagonal.
        own_output: Weight d_j of block j's own output in h_{j+1}; None means 1.
        reads: (L+1) x (L+1) coefficients of each block input (and of what the final
            norm reads, last row) over the embeddings and the block outputs; or None.
        spread: Standard deviation of P over the probe batch; None when static.
        probe: What an input-dependent matrix was averaged over, or None.
        raw: The kind's parameters by name (nested lists), or None.
        frozen_at: The step a learned matrix was frozen at (topology.freeze_at), or None.
        edges: Once frozen, for each row j the states i it reads (ascending): the fixed
            edge list of the pruned matrix; every other entry of the row is zero.
        form: How the mix enters the stream (``topology.form``).
        gates: The gated form's g_j, or None.
        formula: How the kind computes the stream (y_j = Block_j(h_j)), written by the
            kind itself (:func:`legacy_formula` for snapshots of versions 1 to 3).
    """

    step: int
    tokens: int
    num_layers: int
    parameterisation: str
    temperature: float | None
    logits: list[list[float]] | None
    matrix: list[list[float]]
    own_output: list[float] | None = None
    reads: list[list[float]] | None = None
    spread: list[list[float]] | None = None
    probe: str | None = None
    raw: dict[str, list | float] | None = None

    frozen_at: int | None = None
    edges: list[list[int]] | None = None
    form: str = "additive"
    gates: list[float] | None = None
    formula: str = ""

    def to_dict(self) -> dict:
        """Returns the JSON object of the format, header first."""
        return {"format": FORMAT, "version": VERSION, **asdict(self)}

    def check(self, source: str = "snapshot") -> None:
        """Raises SnapshotError (naming ``source``) if the matrix breaks the format's rules."""
        n = self.num_layers
        if not self.formula:
            raise SnapshotError(f"{source}: no formula (every kind writes its own)")
        if len(self.matrix) != n or any(len(row) != n + 1 for row in self.matrix):
            raise SnapshotError(f"{source}: matrix must be {n} x {n + 1} (num_layers x L+1)")
        for j, row in enumerate(self.matrix):
            if any(not math.isfinite(v) for v in row):
                raise SnapshotError(f"{source}: row {j} of the matrix is not finite")
            if any(v != 0.0 for v in row[j + 1 :]):
                raise SnapshotError(f"{source}: row {j} has weight above the diagonal")
            expected = ROW_SUMS.get(self.parameterisation)
            if expected is None:
                continue
            total = sum(row)
            if abs(total - expected) > ROW_SUM_TOLERANCE:
                raise SnapshotError(
                    f"{source}: row {j} of the {self.parameterisation} matrix sums to "
                    f"{total:.6f}, not {expected:g}"
                )
        if self.logits is not None and [len(r) for r in self.logits] != list(range(1, n + 1)):
            raise SnapshotError(f"{source}: logits must be ragged, row j with j+1 entries")
        self._check_effective(source)
        self._check_frozen(source)
        if self.form not in FORMS:
            raise SnapshotError(f"{source}: unknown form {self.form!r}; known: {', '.join(FORMS)}")
        if (self.gates is not None) != (self.form == "gated") or (
            self.gates is not None and len(self.gates) != n
        ):
            raise SnapshotError(f"{source}: the gated form (and only it) has {n} gates")

    def _check_effective(self, source: str) -> None:
        """The version-2 fields of the wirings of other papers, where present."""
        n = self.num_layers
        if self.own_output is not None and len(self.own_output) != n:
            raise SnapshotError(f"{source}: own_output must have {n} entries (one per block)")
        if self.reads is not None:
            if len(self.reads) != n + 1 or any(len(row) != n + 1 for row in self.reads):
                raise SnapshotError(f"{source}: reads must be {n + 1} x {n + 1}")
            if any(v != 0.0 for i, row in enumerate(self.reads) for v in row[i + 1 :]):
                raise SnapshotError(f"{source}: reads has weight above the diagonal")
        if self.spread is not None:
            if len(self.spread) != n or any(len(row) != n + 1 for row in self.spread):
                raise SnapshotError(f"{source}: spread must be {n} x {n + 1}, like the matrix")
            if any(not v >= 0 for row in self.spread for v in row):
                raise SnapshotError(f"{source}: spread holds a negative or non-finite value")

    def _check_frozen(self, source: str) -> None:
        """The edges of a frozen and pruned matrix, where present."""
        n = self.num_layers
        if self.edges is None:
            return
        if len(self.edges) != n:
            raise SnapshotError(f"{source}: edges must have one row per block ({n})")
        for j, (kept, row) in enumerate(zip(self.edges, self.matrix, strict=True)):
            if sorted(set(kept)) != kept or any(not 0 <= i <= j for i in kept):
                raise SnapshotError(f"{source}: edges of row {j} must be ascending states 0..{j}")
            if any(v != 0.0 for i, v in enumerate(row) if i not in kept):
                raise SnapshotError(f"{source}: row {j} has weight outside its edges {kept}")


def write_snapshot(snapshot: TopologySnapshot, path: str | Path) -> None:
    """Checks a snapshot and writes it atomically as JSON."""
    snapshot.check(str(path))
    write_json_atomic(path, snapshot.to_dict())


def read_snapshot(path: str | Path) -> TopologySnapshot:
    """Reads and checks a snapshot file.

    Args:
        path: A ``topology.json`` or ``topology/step_*.json`` file.

    Returns:
        The snapshot.

    Raises:
        SnapshotError: The file is missing, not JSON, of another format or version, or
            its matrix breaks the rules; the message names the file.
    """
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise SnapshotError(f"{path}: no such snapshot file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SnapshotError(f"{path}: not a JSON file ({error})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise SnapshotError(f"{path}: not an {FORMAT} snapshot (format field missing or other)")
    if obj.get("version") not in READABLE_VERSIONS:
        raise SnapshotError(
            f"{path}: snapshot version {obj.get('version')!r}; this ancre reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    try:
        fields = {k: v for k, v in obj.items() if k not in ("format", "version")}
        if obj["version"] < 4:
            fields["formula"] = legacy_formula(path, fields)
        snapshot = TopologySnapshot(**fields)
    except TypeError as error:
        raise SnapshotError(
            f"{path}: fields do not match version {obj.get('version')} ({error})"
        ) from None
    if obj["version"] == 1 and (snapshot.frozen_at is not None or snapshot.edges is not None):
        raise SnapshotError(f"{path}: frozen_at and edges need snapshot version 2")
    if obj["version"] < 3 and (snapshot.form != "additive" or snapshot.gates is not None):
        raise SnapshotError(f"{path}: form and gates need snapshot version 3")
    snapshot.check(str(path))
    return snapshot


def legacy_formula(path: Path, fields: dict) -> str:
    """The formula of a snapshot of versions 1 to 3, from its parameterisation and form.

    Raises:
        SnapshotError: A parameterisation those versions did not have.
    """
    kind, form = fields.get("parameterisation"), fields.get("form", "additive")
    if "formula" in fields:
        raise SnapshotError(f"{path}: a formula needs snapshot version 4; older ones carry none")
    if kind not in LEGACY_FORMULAS:
        raise SnapshotError(
            f"{path}: unknown parameterisation {kind!r} for its version; versions 1 to 3 "
            f"know {', '.join(LEGACY_FORMULAS)}"
        )
    if form in LEGACY_FORM_FORMULAS and kind in LEGACY_MATRICES:
        return f"{LEGACY_FORM_FORMULAS[form]},  {LEGACY_MATRICES[kind]}"
    return LEGACY_FORMULAS[kind]


def matrix_table(matrix: Sequence[Sequence[float]], markdown: bool = False, digits: int = 3) -> str:
    """A connection matrix as a table: row j is block j, column i the state h_i it reads.

    h_0 is the embeddings and h_i the input of block i. The last column of the
    L x (L+1) matrix, h_L, is read by no block and left out; cells above the diagonal
    are blank.

    Args:
        matrix: The L x (L+1) matrix P (or any L x >= L matrix of the same layout).
        markdown: A Markdown table instead of aligned plain text.
        digits: Decimals of each weight.

    Returns:
        The table's lines joined by newlines.
    """
    num_layers = len(matrix)
    width = digits + 3

    def cell(j: int, i: int) -> str:
        return f"{matrix[j][i]:.{digits}f}" if i <= j else ""

    if markdown:
        lines = ["| block | " + " | ".join(f"h{i}" for i in range(num_layers)) + " |"]
        lines.append("|---" * (num_layers + 1) + "|")
        lines += [
            f"| {j} | " + " | ".join(cell(j, i) for i in range(num_layers)) + " |"
            for j in range(num_layers)
        ]
        return "\n".join(lines)
    header = "      " + " ".join(f"{'h' + str(i):>{width}}" for i in range(num_layers))
    rows = [
        f"blk{j:<3}" + " ".join(f"{cell(j, i):>{width}}" for i in range(num_layers))
        for j in range(num_layers)
    ]
    return "\n".join(line.rstrip() for line in [header, *rows])
