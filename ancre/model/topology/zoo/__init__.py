"""The learned residual wirings of other papers, one module each (docs/topologies.md)."""
