"""Hydra plugins of mck (found by Hydra in the ``hydra_plugins`` namespace package)."""
