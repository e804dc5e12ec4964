"""Keras callbacks: hyperparameter schedules and weight diagnostics.

Each callback lives in its own private module; this package re-exports them.
"""

__all__ = []
