"""Coverage-guided fuzzing of the model-file reader (atheris): load_model / load_weights on raw
mutated bytes, and on structure-aware mutations of real files -- a JSON value of the header (a
shape, a size, a name, a tensor's offset or dtype) replaced by an edge value or a random one, with
the checksums recomputed so that the mutation reaches the builder. A clean refusal is an exception
from common.CLEAN; a crash or any other exception is a finding.

    python tests/fuzz/fuzz_load.py tests/fuzz/corpus/load -max_total_time=120     # as CI
    python tests/fuzz/fuzz_load.py tests/fuzz/corpus/load -runs=1000000           # a long run
"""

import os
import sys
import tempfile

import atheris

import cnnbp
import cnnbp.io

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CLEAN, EDGES, join, run, split  # noqa: E402

PATH = os.path.join(tempfile.mkdtemp(prefix="cnnbp-fuzz-"), "m.cnnbp")


def _paths(node, out, prefix=()):
    """Every (path, value) of a JSON tree whose value is a scalar."""
    if isinstance(node, dict):
        for k in sorted(node):
            _paths(node[k], out, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _paths(v, out, prefix + (i,))
    else:
        out.append((prefix, node))
    return out


def _set(node, path, value):
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value


def mutate_structured(fdp, data):
    parts = split(data)
    if parts is None:
        return data
    version, header, blob = parts
    leaves = _paths(header, [])
    for _ in range(fdp.ConsumeIntInRange(1, 3)):
        if not leaves:
            break
        path, old = leaves[fdp.ConsumeIntInRange(0, len(leaves) - 1)]
        choice = fdp.ConsumeIntInRange(0, 5)
        if choice == 0:
            new = EDGES[fdp.ConsumeIntInRange(0, len(EDGES) - 1)]
        elif choice == 1:
            new = fdp.ConsumeInt(8)
        elif choice == 2:
            new = fdp.ConsumeUnicodeNoSurrogates(12)
        elif choice == 3:
            new = None
        elif choice == 4:
            new = [EDGES[fdp.ConsumeIntInRange(0, len(EDGES) - 1)] for _ in range(fdp.ConsumeIntInRange(0, 4))]
        else:
            new = fdp.ConsumeFloat()
        _set(header, path, new)
    if fdp.ConsumeBool() and blob:  # and a few bytes of the tensor data
        b = bytearray(blob)
        for _ in range(fdp.ConsumeIntInRange(1, 4)):
            b[fdp.ConsumeIntInRange(0, len(b) - 1)] = fdp.ConsumeIntInRange(0, 255)
        blob = bytes(b)
    return join(version, header, blob)


def TestOneInput(data):
    # The input: a mode byte, then the file (raw mode, weights mode) or 64 bytes of mutation choices
    # and the file (structured mode). (FuzzedDataProvider reads integers from the end.)
    if not data:
        return
    mode, rest = data[0] % 3, data[1:]
    payload = mutate_structured(atheris.FuzzedDataProvider(rest[:64]), rest[64:]) if mode == 1 else rest
    with open(PATH, "wb") as f:
        f.write(payload)
    try:
        if mode == 2:
            model = cnnbp.Sequential([cnnbp.layers.Input((6, 6, 1)), cnnbp.layers.Conv2D(2, 3),
                                      cnnbp.layers.Flatten(), cnnbp.layers.Dense(3)])
            model.load_weights(PATH)
        else:
            model = cnnbp.io.load_model(PATH)
            model.count_params()
    except CLEAN:
        pass


if __name__ == "__main__":
    run(TestOneInput)
