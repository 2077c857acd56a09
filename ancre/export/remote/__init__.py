"""The code an exported Hugging Face folder carries: it imports transformers, never ancre.

These files are copied into the folder as they are (``trust_remote_code=True`` loads
them there); ancre itself never imports them.
"""
