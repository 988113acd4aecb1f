"""cnnbp's own seed state: model initialisation, dropout and shuffling draw from it."""

import secrets
import threading

import numpy as np

_lock = threading.Lock()
_rng = np.random.default_rng(secrets.randbits(64))


def set_seed(seed):
    """Make weight initialisation, dropout masks and fit's shuffling reproducible."""
    global _rng
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"set_seed: expected a non-negative int, got {seed!r}")
    with _lock:
        _rng = np.random.default_rng(int(seed))


def next_seed():
    with _lock:
        return int(_rng.integers(0, 2**63 - 1))
