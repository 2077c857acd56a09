"""Exports of a trained model for other libraries: a Hugging Face transformers folder."""
