"""ancre: pretraining Llama-style models whose residual wiring is learned."""

__version__ = "0.1.0"
