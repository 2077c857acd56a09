"""Sizing a run before it starts: bytes per rank, FLOPs, step time (``ancre plan``).

- ``memory``: model states by ZeRO stage and optimiser; activations per micro-batch.
- ``plan``: a config on N devices of a kind, built on the meta device; what would fit.
- ``report``: the plan in words.
- ``commands``: the ``ancre plan`` command.
"""
