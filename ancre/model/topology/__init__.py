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

``topology.form`` says how the mix enters the stream (``ancre.model.topology.forms``): the
paper's additive form above, ``replace`` (h_{j+1} = y_j - h_j + sum_i P[j, i] h_i) or
``gated`` (h_{j+1} = y_j + g_j sum_i P[j, i] h_i, g_j learned from 0); every form runs
as the additive mix with weights W computed from P.

The logits and the softmax stay in fp32 whatever precision the blocks run in. The
topology works on any sequence of blocks that map a state to a state of the same shape.

The package: ``base`` (the cascaded wiring, the base of every kind), ``uniform``,
``softmax`` (Ancre's learned rows, their freeze), ``fixed``, ``forms``, ``freeze``,
``effective`` (any kind's effective matrix), the wirings of other papers in ``zoo/``,
and ``kinds`` (the one table of kinds: class, options, width, export).
"""

from ancre.model.topology.base import Block, Topology
from ancre.model.topology.fixed import FixedTopology, parse_edges
from ancre.model.topology.kinds import KINDS, Kind, build_topology
from ancre.model.topology.softmax import AncreTopology, freeze_due, freeze_if_due
from ancre.model.topology.uniform import UniformTopology

__all__ = [
    "KINDS",
    "AncreTopology",
    "Block",
    "FixedTopology",
    "Kind",
    "Topology",
    "UniformTopology",
    "build_topology",
    "freeze_due",
    "freeze_if_due",
    "parse_edges",
]
