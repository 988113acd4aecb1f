"""Where fit / evaluate / predict get their batches from.

- Arrays of any numeric dtype, memory-mapped ``.npy`` files included (``np.load(path,
  mmap_mode="r")``): the whole array is never converted or copied; each batch's rows are gathered
  and converted to the model's float dtype (``_core.gather_rows``, without the GIL). A uint8 image
  set thus stays 4x smaller than its float32 copy (put ``Rescaling(1/255)`` first in the model).
  In ``fit`` the next batch is gathered in a background thread while the current step runs when a
  core is free for it (see PREFETCH).
- A Python generator or iterator of ``(x, y)`` / ``(x, y, sample_weight)`` batches (``x`` alone for
  predict), and a ``cnnbp.utils.Sequence`` (Keras's ``PyDataset``: ``__len__``, ``__getitem__``,
  ``on_epoch_end``): a background thread keeps a bounded queue of the next batches filled.
Every batch is checked before its step (shapes, dtypes, x/y lengths); a bad one raises an error
naming its batch index, with the model as the last completed step left it."""

import concurrent.futures
import os
import queue
import threading

import numpy as np

from . import _core


def is_source(x):
    """True for inputs read batch by batch (generators, iterators, Sequences), not arrays."""
    from .utils import Sequence
    if isinstance(x, Sequence):
        return True
    return hasattr(x, "__next__") and not isinstance(x, np.ndarray)


# Whether fit gathers the next array batch in a background thread: None (auto) does when the
# process has a core the step's threads leave free. On a machine whose cores all run the step, a
# concurrent gather slows the step by more than the gather costs in line (bench/bench_pipeline.py:
# 2 cores, 2 threads, seed model: +5.8 % over the bare step loop with the thread, +4.0 % without).
PREFETCH = None


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class ArrayBatches:
    """Batches of the rows of (x, y, w): in a per-epoch random order (a pure function of (seed,
    epoch)) or in order. dist: the data-parallel session (each rank reads its slice of the global
    batch), or None."""

    def __init__(self, x, y, w, bs, dtype, shuffle, seed, dist=None, prefetch=None):
        if prefetch is None:
            prefetch = PREFETCH if PREFETCH is not None else _cores() > _core.get_num_threads()
        self.x, self.y, self.w = x, y, w
        self.n = len(x)
        self.bs, self.dtype, self.shuffle, self.seed, self.dist = bs, dtype, shuffle, seed, dist
        self.world = dist.size if dist else 1
        self.gbs = bs * self.world
        self.steps = -(-self.n // self.gbs)
        self.samples = self.n
        self.direct = x.dtype == dtype and x.flags.c_contiguous   # in-order batches are views of x
        self.native = x.flags.c_contiguous                        # rows gathered by _core.gather_rows
        k = min(bs, self.n)
        self.bufs = [self._alloc(k) for _ in range(2 if prefetch else 1)]
        self.pool = concurrent.futures.ThreadPoolExecutor(1, "cnnbp-batches") if prefetch else None

    def _alloc(self, k):
        return (np.empty((k,) + self.x.shape[1:], dtype=self.dtype),
                np.empty((k,) + self.y.shape[1:], dtype=self.y.dtype),
                None if self.w is None else np.empty(k, dtype=self.w.dtype))

    def limit(self, steps):
        """At most `steps` batches per epoch (Keras's steps_per_epoch / validation_steps on arrays)."""
        if steps is not None:
            self.steps = min(self.steps, int(steps))
            self.samples = min(self.n, self.steps * self.gbs)

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None

    def _batch(self, order, step, buf):
        a, b = step * self.gbs, min((step + 1) * self.gbs, self.n)
        la, lb = self.dist.local(a, b) if self.dist else (a, b)
        k = lb - la
        xbuf, ybuf, wbuf = buf
        if order is None:
            if self.direct:
                xb = self.x[la:lb]
            elif self.native:
                xb = xbuf[:k]
                _core.gather_rows(self.x[la:lb], None, xb)
            else:
                xb = xbuf[:k]
                xb[...] = self.x[la:lb]
            yb = self.y[la:lb]
            wb = None if self.w is None else self.w[la:lb]
        else:
            idx = order[la:lb]
            xb = xbuf[:k]
            if self.native:
                _core.gather_rows(self.x, idx, xb)
            else:
                xb[...] = self.x[idx]
            yb = np.take(self.y, idx, axis=0, out=ybuf[:k])
            wb = None if self.w is None else np.take(self.w, idx, out=wbuf[:k])
        return xb, yb, wb, b - a

    def epoch(self, epoch, first=True):
        """(x, y, w, samples of the global batch) per step; the next batch is prepared while the
        caller trains on this one."""
        order = np.random.default_rng([self.seed, epoch]).permutation(self.n) if self.shuffle else None
        if self.pool is None:
            for step in range(self.steps):
                yield self._batch(order, step, self.bufs[0])
            return
        fut = self.pool.submit(self._batch, order, 0, self.bufs[0])
        try:
            for step in range(self.steps):
                out = fut.result()
                fut = None
                if step + 1 < self.steps:
                    fut = self.pool.submit(self._batch, order, step + 1, self.bufs[(step + 1) % 2])
                yield out
        finally:
            if fut is not None:
                fut.cancel()
                concurrent.futures.wait([fut])


def rows(x, a, b, dtype, buf=None):
    """x[a:b] as a C-contiguous array of dtype (a view when it already is one)."""
    part = x[a:b]
    if part.dtype == dtype and part.flags.c_contiguous:
        return part
    out = buf[: b - a] if buf is not None else np.empty((b - a,) + x.shape[1:], dtype=dtype)
    if part.flags.c_contiguous:
        _core.gather_rows(part, None, out)
    else:
        out[...] = part
    return out


class _Prefetcher:
    """Runs produce(i) for i = 0, 1, ... (until it raises StopIteration, or up to `limit` items) in a
    background thread, keeping at most `depth` results ahead of the consumer."""

    _END = object()

    def __init__(self, produce, limit=None, depth=10):
        self.q = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(produce, limit), daemon=True,
                                       name="cnnbp-prefetch")
        self.thread.start()

    def _run(self, produce, limit):
        i = 0
        while not self.stop.is_set() and (limit is None or i < limit):
            try:
                item = ("ok", i, produce(i))
            except StopIteration:
                item = ("end", i, None)
            except BaseException as e:  # handed to the consumer, which raises it
                item = ("error", i, e)
            while not self.stop.is_set():
                try:
                    self.q.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[0] != "ok":
                return
            i += 1
        if not self.stop.is_set():
            self.q.put(("end", i, None))

    def __iter__(self):
        while True:
            kind, i, value = self.q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield i, value

    def close(self):
        self.stop.set()
        while True:   # unblock a producer waiting on a full queue
            try:
                self.q.get_nowait()
            except queue.Empty:
                break
        self.thread.join(timeout=5)


class SourceBatches:
    """Batches from a generator / iterator or a Sequence, checked and converted by `prepare(raw,
    index)` (which returns (x, y, w) or raises naming the batch), prefetched in a thread."""

    def __init__(self, source, steps, prepare, what="x"):
        from .utils import Sequence
        self.source, self.prepare, self.what = source, prepare, what
        self.is_seq = isinstance(source, Sequence)
        if self.is_seq:
            n = len(source)
            if n <= 0:
                raise ValueError(f"{what}: the Sequence is empty (len() = {n})")
            self.steps = n if steps is None else min(int(steps), n)
        else:
            self.steps = None if steps is None else int(steps)
        if self.steps is not None and self.steps <= 0:
            raise ValueError(f"{what}: steps must be positive, got {self.steps}")
        self.ran_out = False   # a generator ended before the epoch did: fit stops, as Keras
        self.samples = None

    def epoch(self, epoch, first=True):
        if self.is_seq:
            seq = self.source

            def produce(i):
                try:
                    return seq[i]
                except Exception as e:
                    raise RuntimeError(f"{self.what}: the Sequence raised on batch {i} ({type(e).__name__}: {e})") \
                        from e
        else:
            it = self.source

            def produce(i):
                return next(it)
        pf = _Prefetcher(produce, self.steps)
        got = 0
        try:
            for i, raw in pf:
                got += 1
                yield self.prepare(raw, i)
        finally:
            pf.close()
        if self.is_seq:
            if hasattr(self.source, "on_epoch_end"):
                self.source.on_epoch_end()
            return
        if got == 0 and first:
            raise ValueError(f"{self.what}: the generator gave no batches")
        if got == 0 or (self.steps is not None and got < self.steps):
            self.ran_out = True
        if self.steps is None:
            self.steps = got   # the length of an epoch, for the progress bar from now on

    def close(self):
        pass
