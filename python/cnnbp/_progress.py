"""Keras-style progress output for fit/evaluate/predict: a live bar on a terminal, one line per
epoch otherwise."""

import sys
import time


def _fmt_time(s):
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    if s >= 60:
        return f"{s // 60}:{s % 60:02d}"
    return f"{s}s"


def _fmt_logs(logs):
    return " - ".join(f"{k}: {_fmt_value(v)}" for k, v in logs.items())


def _tail(logs):
    return " - " + _fmt_logs(logs) if logs else ""


def _fmt_value(v):
    """A log value: a number, or a vector (a per-class metric) printed in brackets."""
    if isinstance(v, (list, tuple)) or getattr(v, "ndim", 0):
        return "[" + " ".join(f"{float(a):.4f}" for a in v) + "]"
    return f"{v:.4f}"


class Progress:
    def __init__(self, total_steps, total_samples, verbose, stream=None):
        self.stream = stream or sys.stdout
        self.total = total_steps
        self.samples_total = total_samples
        self.verbose = verbose
        self.live = verbose == 1 and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()
        self.last_draw = 0.0
        self.samples = 0
        self.step = 0

    def update(self, step, samples, logs):
        self.samples = samples
        self.step = step
        if not self.live:
            return
        now = time.perf_counter()
        total = self.total
        if now - self.last_draw < 0.1 and (total is None or step < total):
            return
        self.last_draw = now
        elapsed = now - self.start
        rate = samples / elapsed if elapsed > 0 else 0.0
        if total is None:   # a generator of unknown length (its first epoch)
            line = f"\r{step}/? - {_fmt_time(elapsed)} - {rate:,.0f} img/s" + _tail(logs)
            self.stream.write(line + "\033[K")
            self.stream.flush()
            return
        width = 30
        done = int(width * step / max(total, 1))
        bar = "=" * max(done - 1, 0) + (">" if step < total else "=") + "." * (width - done)
        eta = (total - step) * elapsed / step if step else 0.0
        tail = f"ETA {_fmt_time(eta)}" if step < total else _fmt_time(elapsed)
        line = f"\r{step}/{total} [{bar}] {tail} - {rate:,.0f} img/s" + _tail(logs)
        self.stream.write(line + "\033[K")
        self.stream.flush()

    def finish(self, logs):
        if self.verbose == 0:
            return
        elapsed = time.perf_counter() - self.start
        rate = self.samples / elapsed if elapsed > 0 else 0.0
        if self.live:
            self.stream.write("\r" + "\033[K")
        steps = self.total if self.total is not None else self.step
        line = f"{steps}/{steps} - {_fmt_time(elapsed)} - {rate:,.0f} img/s" + _tail(logs)
        self.stream.write(line + "\n")
        self.stream.flush()
