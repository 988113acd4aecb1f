"""Data-parallel training over MPI (mpi4py): ``model.fit(..., distributed=True)``.

Every rank runs the same script (``mpiexec -n 2 python train.py``) and holds the same model and
the same training data. ``fit(distributed=True)``

- checks at the start that every rank has the same model, optimizer, loss, data size and fit
  arguments (and fails on every rank with a message naming the difference, instead of hanging);
- broadcasts rank 0's weights, optimizer state, step counter and shuffle seed;
- splits every global batch of ``batch_size * world_size()`` samples of the epoch's shuffled order
  into one contiguous slice per rank (the union over ranks is the single-process epoch);
- sums the flat gradient buffer over ranks in place, on the numpy view of the C++ buffer (mpi4py
  releases the GIL while it waits): in buckets of about 1 MiB of consecutive layers, each started
  with ``MPI_Iallreduce`` from inside the backward pass as soon as its layers are done (last layer
  first), so the reduction overlaps the backward pass of the earlier layers; ``init(bucket_mb=0)``
  makes it one blocking ``MPI_Allreduce`` after the backward pass. Each rank's gradient is scaled
  by its share of the global batch (through the loss gradient), so the sum is the mean gradient
  over the global batch, what one process computes on that batch;
- checks at the end of each epoch that the weights are bit-identical on all ranks, and
  broadcasts rank 0's (with a RuntimeWarning) if a reduction rounded differently somewhere;
- sums loss, correct count and validation results over ranks, so every rank sees the same logs and
  callbacks decide the same way (a stop requested on any rank stops all of them);
- prints progress only on rank 0; ModelCheckpoint and CSVLogger write only on rank 0.

``batch_size`` is per rank: with N ranks one optimizer step sees ``N * batch_size`` samples. To
keep the single-process behaviour at ``batch_size=B`` use ``batch_size=B // N``; with the same
per-rank batch, the usual starting point is a learning rate scaled by N for SGD (linear scaling
rule) and unchanged, or scaled by sqrt(N), for Adam.

Timeouts: the start-of-fit check waits ``timeout`` seconds (default 60, environment variable
``CNNBP_DISTRIBUTED_TIMEOUT``) for every rank to arrive; a rank that is still waiting then says
that some ranks never arrived and aborts the whole job (``MPI_Abort``), since the others cannot be
reached any more. During training an exception that is not raised identically on every rank (an
error in one rank's callback, Ctrl-C) likewise prints its traceback and aborts the job: a rank
that left the step would otherwise leave the others waiting in the all-reduce forever. Errors that
every rank sees alike (a different model, a non-finite loss after the reduction) are raised as
Python exceptions on every rank.
"""

import contextlib
import hashlib
import os
import sys
import time
import traceback
import warnings
import zlib

import numpy as np

__all__ = ["init", "is_initialized", "rank", "world_size", "barrier", "comm", "DistributedError"]

_comm = None
_bucket_bytes = 1 << 20


class DistributedError(RuntimeError):
    """Ranks disagree (model, data, arguments) or one did not arrive in time."""


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("cnnbp.distributed needs mpi4py and an MPI library: pip install \"cnnbp[mpi]\" "
                          f"(mpi4py with the MPICH wheel), or mpi4py built against your system MPI ({e})") from None
    return MPI


def init(comm=None, bucket_mb=None):
    """Start (or join) MPI and use ``comm`` (default ``MPI.COMM_WORLD``) for data-parallel
    training. Safe to call more than once; returns the communicator.

    ``bucket_mb`` (default 1): the gradient is reduced in buckets of about this many MiB, each
    started (non-blocking) as soon as the backward pass has finished its layers, so communication
    overlaps the backward pass of the earlier layers; 0 reduces the whole buffer with one blocking
    all-reduce after the backward pass."""
    global _comm, _bucket_bytes
    if bucket_mb is not None:
        if not isinstance(bucket_mb, (int, float)) or isinstance(bucket_mb, bool) or not bucket_mb >= 0:
            raise ValueError(f"init: bucket_mb must be a number >= 0, got {bucket_mb!r}")
        _bucket_bytes = int(bucket_mb * (1 << 20))
    MPI = _mpi()
    if comm is not None:
        _comm = comm
    elif _comm is None:
        _comm = MPI.COMM_WORLD
    return _comm


def is_initialized():
    return _comm is not None


def comm():
    """The communicator in use (initialises with ``MPI.COMM_WORLD`` on first use)."""
    return init()


def rank():
    """This process's rank (0 .. world_size()-1); 0 when run without mpiexec."""
    return init().Get_rank()


def world_size():
    """Number of ranks; 1 when run without mpiexec."""
    return init().Get_size()


def _timeout(value=None):
    if value is not None:
        return float(value)
    return float(os.environ.get("CNNBP_DISTRIBUTED_TIMEOUT", "60"))


def barrier(timeout=None):
    """Wait until every rank arrives; after ``timeout`` seconds say that some never arrived and
    abort the job (they cannot be waited for any longer without hanging)."""
    c = init()
    if c.Get_size() == 1:
        return
    limit = _timeout(timeout)
    req = c.Ibarrier()
    deadline = time.monotonic() + limit
    pause = 1e-4
    while not req.Test():
        if time.monotonic() > deadline:
            _abort(c, f"cnnbp.distributed: rank {c.Get_rank()} waited {limit:g} s for the other "
                      f"{c.Get_size() - 1} rank(s) to start distributed training; some never arrived "
                      "(did every rank call fit(distributed=True) with the same arguments?). Aborting the job.")
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _abort(c, message):
    print(message, file=sys.stderr, flush=True)
    time.sleep(1.0)  # let mpiexec forward the message before MPI_Abort tears the job down
    c.Abort(1)
    os._exit(1)  # Abort does not return; never continue if an MPI library lets it


# ---- the pieces fit uses ----------------------------------------------------------------------
def _fingerprint(model, x, y, fit_args):
    """What must agree on every rank, as a dict of short comparable values."""
    from . import __version__
    layers = []
    for l in model._layers:
        cfg = {k: v for k, v in l.get_config().items() if k not in ("name", "seed", "trainable")}
        layers.append((type(l).__name__, cfg))
    n = len(x)
    rows = np.unique(np.linspace(0, n - 1, min(n, 64)).astype(np.int64))
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(x[rows]).tobytes())
    h.update(np.ascontiguousarray(y[rows]).tobytes())
    return {
        "cnnbp version": __version__,
        "dtype": model.dtype_policy.name,
        "input shape": tuple(model._input_shape),
        "layers": layers,
        "parameters": int(model._net.num_params),
        "loss": model._loss.name,
        "optimizer": repr(sorted(model._optimizer.get_config().items())),
        "training samples": n,
        "x shape": tuple(x.shape[1:]),
        "y shape": tuple(y.shape[1:]),
        "data (64 sampled rows)": h.hexdigest()[:16],
        **fit_args,
    }


def _check_consistent(c, mine, timeout=None):
    barrier(timeout)  # all ranks are here: the allgather below cannot hang
    everyone = c.allgather(mine)
    ref = everyone[0]
    problems = []
    for r, fp in enumerate(everyone[1:], start=1):
        keys = [k for k in ref if fp.get(k) != ref[k]] + [k for k in fp if k not in ref]
        for k in keys:
            if k == "layers":
                problems.append(_layer_difference(r, fp[k], ref[k]))
            else:
                problems.append(f"rank {r} {k} {fp.get(k)!r} != rank 0 {k} {ref.get(k)!r}")
    if problems:
        raise DistributedError("fit(distributed=True): the ranks disagree, so they cannot train one model "
                               "together:\n  " + "\n  ".join(problems[:10]) +
                               ("\n  ..." if len(problems) > 10 else ""))


def _layer_difference(r, mine, ref):
    if len(mine) != len(ref):
        return (f"rank {r} model has {len(mine)} layers ({', '.join(c for c, _ in mine)}) != rank 0 model "
                f"{len(ref)} layers ({', '.join(c for c, _ in ref)})")
    for i, ((c1, a), (c0, b)) in enumerate(zip(mine, ref)):
        if c1 != c0:
            return f"rank {r} model layer {i} is {c1} != rank 0 model layer {i} {c0}"
        if a != b:
            diff = ", ".join(f"{k}={a.get(k)!r} (rank 0: {b.get(k)!r})" for k in sorted(set(a) | set(b))
                             if a.get(k) != b.get(k))
            return f"rank {r} model layer {i} ({c1}): {diff}"
    return f"rank {r} model differs from rank 0"


def _buckets(net, nbytes):
    """Contiguous ranges of the gradient buffer, each at least nbytes (but the last), in the order
    the backward pass finishes them: from the end of the buffer towards its start."""
    g = net.flat_grads()  # num_params plus the padding that keeps each parameter 64-byte aligned
    total, itemsize = g.size, g.itemsize
    ranges = []
    for info in net.layer_info():
        ps = info["params"]
        if ps:
            ranges.append((min(p[2] for p in ps), max(p[2] + p[3] for p in ps)))
    out = []
    hi = total
    lo = None
    for b, _ in sorted(ranges, reverse=True):
        lo = b
        if (hi - lo) * itemsize >= nbytes:
            out.append((lo, hi))
            hi = lo
    if hi > 0 or not out:
        out.append((0, hi))
    if out[0][1] != total or out[-1][0] != 0:
        raise AssertionError(f"gradient buckets {out} do not cover [0, {total})")
    return [r for r in out if r[1] > r[0]]


def _broadcast_state(c, model):
    """Rank 0's weights, optimizer state, step counter and shuffle seed on every rank."""
    net = model._net
    c.Bcast(net.flat_params(), root=0)
    if net.num_state:
        c.Bcast(net.flat_state(), root=0)
    for s in net.optimizer_state():
        c.Bcast(s, root=0)
    net.iterations, model._shuffle_seed = c.bcast((int(net.iterations), int(model._shuffle_seed)), root=0)


class _Session:
    """State of one distributed fit: the communicator, this rank's slices and the reductions."""

    def __init__(self, model):
        self.MPI = _mpi()
        self.c = init()
        self.rank = self.c.Get_rank()
        self.size = self.c.Get_size()
        self.model = model
        self.grads = model._net.flat_grads()
        self.stats = np.zeros(3, dtype=np.float64)
        self.allreduce_s = 0.0
        self.steps = 0
        self.buckets = _buckets(model._net, _bucket_bytes) if self.size > 1 and _bucket_bytes > 0 else None
        self.reqs = []

    def local(self, a, b):
        """This rank's contiguous slice of global rows [a, b)."""
        m = b - a
        return a + m * self.rank // self.size, a + m * (self.rank + 1) // self.size

    def _launch(self, upto):
        """Start the all-reduce of every bucket not started yet whose range lies at or above upto."""
        MPI = self.MPI
        while self.next < len(self.buckets) and self.buckets[self.next][0] >= upto:
            lo, hi = self.buckets[self.next]
            self.reqs.append(self.c.Iallreduce(MPI.IN_PLACE, self.grads[lo:hi], op=MPI.SUM))
            self.next += 1

    def _ready(self, begin, end):
        # Called from inside the backward pass (last layer first): start the buckets that are
        # complete, and let MPI progress the ones in flight while the earlier layers run.
        t0 = time.perf_counter()
        self._launch(begin)
        if self.reqs:
            self.MPI.Request.Testall(self.reqs)
        self.allreduce_s += time.perf_counter() - t0

    def step(self, xb, yb, m, wb=None):
        """Gradients of this rank's rows (xb may be empty), summed over ranks; returns the global
        (mean loss, correct count, metric sums) of the m-sample global batch."""
        net, MPI = self.model._net, self.MPI
        k = len(xb)
        self.next = 0
        overlap = self.buckets is not None
        if k:
            loss, correct = net.compute_gradients(xb, yb, k / m, self._ready if overlap else None, wb)
            msums = net.metric_sums()
        else:
            self.grads.fill(0)
            loss, correct, msums = 0.0, 0, 0.0
        if len(self.stats) != 3 + len(net.metric_sums()):
            self.stats = np.zeros(3 + len(net.metric_sums()), dtype=np.float64)
        self.stats[:3] = (loss * k, correct, k)
        self.stats[3:] = msums
        t0 = time.perf_counter()
        if overlap:
            self._launch(0)  # the same buckets in the same order on every rank, also an empty one
            self.reqs.append(self.c.Iallreduce(MPI.IN_PLACE, self.stats, op=MPI.SUM))
            MPI.Request.Waitall(self.reqs)
            self.reqs.clear()
        else:
            self.c.Allreduce(MPI.IN_PLACE, self.grads, op=MPI.SUM)
            self.c.Allreduce(MPI.IN_PLACE, self.stats, op=MPI.SUM)
        self.allreduce_s += time.perf_counter() - t0
        self.steps += 1
        return self.stats[0] / m, int(round(self.stats[1])), self.stats[3:]

    def sync_state(self):
        """After an update: each rank blended its own shard's batch statistics into the moving
        statistics (BatchNormalization); their mean over ranks is the same on every rank."""
        net = self.model._net
        if not net.num_state or self.size == 1:
            return
        st = net.flat_state()
        self.c.Allreduce(self.MPI.IN_PLACE, st, op=self.MPI.SUM)
        st *= 1.0 / self.size

    def check_weights(self):
        """Every rank applies the same summed gradient, so the weights should be bit-identical; if
        an MPI library's reduction rounded differently on some rank, rank 0's weights win."""
        net = self.model._net
        mine = zlib.crc32(net.flat_state(), zlib.crc32(net.flat_params())) ^ (int(net.iterations) << 32)
        crcs = self.c.allgather(mine)
        if len(set(crcs)) > 1:
            _broadcast_state(self.c, self.model)
            if self.rank == 0:
                warnings.warn("cnnbp.distributed: the ranks' weights drifted apart (the MPI reduction gave "
                              "different roundings on different ranks); rank 0's weights were broadcast",
                              RuntimeWarning, stacklevel=2)
            return False
        return True

    def sum(self, values):
        buf = np.asarray(values, dtype=np.float64).copy()
        self.c.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        return buf

    def any(self, flag):
        return bool(self.c.allreduce(bool(flag), op=self.MPI.LOR))

    @contextlib.contextmanager
    def guard(self):
        """Rank 0 keeps stdout; an exception not raised alike on all ranks aborts the job."""
        quiet = open(os.devnull, "w") if self.rank != 0 else None
        try:
            with contextlib.redirect_stdout(quiet) if quiet else contextlib.nullcontext():
                yield
        except DistributedError:
            raise
        except _CollectiveError as e:
            raise e.__cause__ from None
        except BaseException:
            if self.size > 1:
                _abort(self.c, f"cnnbp.distributed: rank {self.rank} failed during fit(distributed=True); "
                               f"aborting the job so the other ranks do not wait forever:\n"
                               + traceback.format_exc())
            raise
        finally:
            if quiet:
                quiet.close()


class _CollectiveError(Exception):
    """Wraps an error every rank raises alike (so it propagates instead of aborting)."""
