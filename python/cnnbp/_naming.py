"""Keras-style automatic layer names: conv2d, conv2d_1, conv2d_2, ..."""

import itertools
import re
import threading

_lock = threading.Lock()
_counters = {}


def snake(name):
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()
    return re.sub(r"(\d)_d\b", r"\1d", s)  # Conv2D -> conv2d, as Keras


def unique_name(base):
    with _lock:
        c = _counters.setdefault(base, itertools.count())
        i = next(c)
    return base if i == 0 else f"{base}_{i}"
