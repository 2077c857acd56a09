"""What the tests share: starting runs (``training``, ``processes``), tiny models and
conversions (``zoo_models``, ``conversions``), report checks, local benchmark tasks and
synthetic snapshots. Nothing here is a test; each module imports only what it needs."""
