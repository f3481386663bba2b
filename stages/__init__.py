"""The DVC stages, one thin module each, run as ``python -m stages.<name>`` from the repo root."""
