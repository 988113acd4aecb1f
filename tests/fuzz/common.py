"""Shared pieces of the fuzz harnesses: the exceptions a clean refusal may raise, a memory ceiling
for the fuzzing process, and the file format's (re)writing with valid checksums."""

import json
import resource
import sys
import zlib

from cnnbp.io import _PRELUDE, MAGIC

# A refusal is one of these; anything else escaping (or the process dying) is a finding.
CLEAN = (ValueError, TypeError, MemoryError, OSError, KeyError, OverflowError, RecursionError)

# Sizes where arithmetic breaks: around 2**31, 2**32, 2**63 and small edge values.
EDGES = [0, 1, 2, 3, -1, 2**15, 2**16 + 1, 46341, 2**31 - 1, 2**31, 2**32, 2**32 + 1, 2**40, 2**62, 2**63 - 1,
         2**63, 2**64, -(2**31), -(2**63)]


def limit_memory(gib=4):
    """Caps the address space so the memory budget answers for anything larger (a fuzzed shape
    that fits in RAM but not in the fuzzer's RSS limit would otherwise be reported as a leak)."""
    lim = gib << 30
    resource.setrlimit(resource.RLIMIT_AS, (lim, lim))


def split(data):
    """(header dict, tensor bytes) of a cnnbp file's bytes, or None."""
    if len(data) < _PRELUDE.size or data[:8] != MAGIC:
        return None
    _, version, hlen, _ = _PRELUDE.unpack_from(data)
    try:
        header = json.loads(data[_PRELUDE.size:_PRELUDE.size + hlen])
    except ValueError:
        return None
    return (version, header, data[_PRELUDE.size + hlen:]) if isinstance(header, dict) else None


def join(version, header, blob):
    """A file with this header and tensor data, every checksum valid."""
    header = dict(header, blob_nbytes=len(blob), blob_crc32=zlib.crc32(blob))
    hbytes = json.dumps(header, sort_keys=True).encode("utf-8")
    return _PRELUDE.pack(MAGIC, version, len(hbytes), zlib.crc32(hbytes)) + hbytes + blob


def run(test_one_input, gib=4):
    """libFuzzer's main loop over test_one_input, with a memory ceiling of `gib` and every loaded
    module instrumented (instrument_imports misses packages behind an editable install's loader)."""
    import atheris
    limit_memory(gib)
    atheris.instrument_all()
    atheris.Setup(sys.argv + ["-rss_limit_mb=6144"], test_one_input)
    atheris.Fuzz()
