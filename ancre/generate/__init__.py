"""Autoregressive generation from a trained model: the KV cache, sampling, the decode loop."""
