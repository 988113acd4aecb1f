"""Runtime ISA dispatch: CNNBP_CPU_CAPABILITY lowers the path (never raises it), every path trains,
and the same seed gives bit-identical weights after 20 training steps on any thread count (sums
are taken in fixed blocks, see docs/performance.md); paths differ from each other only by
rounding. Each case runs in a fresh interpreter, since the path is chosen once at import."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import cnnbp
from cnnbp import _core

from conftest import ISAS

PATHS = [i for i in ISAS if i in ("baseline", "avx2", "avx512")]
THREADS = (1, 2, 3)
ALL_THREADS = (1, 2, 3, 4, 8)

SCRIPT = r"""
import json, sys
import numpy as np
import cnnbp
from cnnbp.layers import Input, Conv2D, MaxPooling2D, Flatten, Dense, Dropout
threads = int(sys.argv[1])
cnnbp.set_num_threads(threads)
out = {"capability": cnnbp.cpu_capability(), "runs": []}
rng = np.random.default_rng(0)
x = rng.random((64, 12, 12, 3), dtype=np.float32)
y = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 64)]
for run in range(2):
    cnnbp.set_seed(42)
    m = cnnbp.Sequential([Input((12, 12, 3)), Conv2D(16, 3, padding="same", activation="relu"), MaxPooling2D(),
                          Conv2D(20, 3, activation="relu"), Flatten(), Dropout(0.2), Dense(5, activation="softmax")])
    m.compile(optimizer="adam", loss="categorical_crossentropy")
    for step in range(20):
        a = (step * 16) % 64
        m.network.train_step(x[a:a + 16], y[a:a + 16])
    out["runs"].append(np.concatenate([w.ravel() for w in m.get_weights()]).tolist())
print(json.dumps(out))
"""

# Every reference model (small inputs), 20 steps of batch 21 (blocks of unequal size), weights and
# BatchNormalization's moving statistics hashed.
MODELS_SCRIPT = r"""
import hashlib, json, sys
import numpy as np
import cnnbp
cnnbp.set_num_threads(int(sys.argv[1]))
out = {}
for name in sorted(cnnbp.applications.MODELS):
    cnnbp.set_seed(3)
    shape = (28, 28, 1) if name in ("seed", "lenet", "small_resnet") else (12, 12, 3)
    m = cnnbp.applications.MODELS[name](input_shape=shape, classes=10)
    m.compile(optimizer="adam", loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((42,) + shape, dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 42)]
    for step in range(20):
        a = (step * 21) % 42
        m.network.train_step(x[a:a + 21], y[a:a + 21])
    out[name] = [hashlib.sha1(np.ascontiguousarray(w).tobytes()).hexdigest() for w in m.get_weights()]
print(json.dumps(out))
"""


def run(capability, threads, script=SCRIPT):
    env = dict(os.environ, CNNBP_CPU_CAPABILITY=capability)
    env.pop("OMP_NUM_THREADS", None)
    p = subprocess.run([sys.executable, "-c", script, str(threads)], env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def results():
    return {(c, t): run(c, t) for c in PATHS for t in THREADS}


@pytest.mark.parametrize("capability", PATHS)
def test_environment_variable_selects_the_path(results, capability):
    assert results[(capability, 1)]["capability"] == capability


@pytest.mark.parametrize("capability", PATHS)
@pytest.mark.parametrize("threads", THREADS)
def test_same_seed_and_path_give_bit_identical_weights_on_any_thread_count(results, capability, threads):
    a, b = results[(capability, threads)]["runs"]
    assert np.array_equal(np.array(a), np.array(b))  # the same process, twice
    assert np.array_equal(np.array(a), np.array(results[(capability, 1)]["runs"][0]))  # 1 thread


def test_paths_agree_closely(results):
    ref = np.array(results[("baseline", 1)]["runs"][0])
    for key, r in results.items():
        w = np.array(r["runs"][0])
        err = np.linalg.norm(w - ref) / np.linalg.norm(ref)
        assert err < 1e-4, f"{key}: relative difference {err:.2e} from baseline"


@pytest.mark.slow
@pytest.mark.parametrize("capability", PATHS)
def test_reference_models_train_to_the_same_bits_on_1_2_3_4_and_8_threads(capability):
    first = run(capability, 1, MODELS_SCRIPT)
    assert len(first) == len(cnnbp.applications.MODELS)
    for t in ALL_THREADS[1:]:
        other = run(capability, t, MODELS_SCRIPT)
        for name in first:
            diff = [i for i, (a, b) in enumerate(zip(first[name], other[name])) if a != b]
            assert not diff, f"{name} on {capability}, {t} threads: weight tensors {diff} differ from 1 thread"


def test_capability_can_only_be_lowered():
    best = _core.detected_capability()
    env = dict(os.environ, CNNBP_CPU_CAPABILITY="avx512")
    p = subprocess.run([sys.executable, "-c", "import cnnbp; print(cnnbp.cpu_capability())"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.stdout.strip() == best
    env["CNNBP_CPU_CAPABILITY"] = "nonsense"
    p = subprocess.run([sys.executable, "-c", "import cnnbp; print(cnnbp.cpu_capability())"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.stdout.strip() == best


def test_unsupported_isa_is_refused_not_run():
    order = ["baseline", "avx2", "avx512"]
    higher = order[order.index(_core.detected_capability()) + 1:]
    for isa in higher:
        with pytest.raises(ValueError, match="not supported by this CPU"):
            cnnbp.ops.dense(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.float32), isa=isa)


def test_the_build_under_test_is_the_one_asked_for():
    """.ci/compilers runs the suite against other builds (clang; no thread pool) put first on
    PYTHONPATH and says which through these variables: the suite must really be running that build."""
    info = _core.build_info()
    compiler = os.environ.get("CNNBP_EXPECT_COMPILER")
    if compiler:
        assert compiler in info["compiler"].lower(), info
    if os.environ.get("CNNBP_EXPECT_THREADS") == "0":
        assert info["threads"] is None, info
        assert cnnbp.get_num_threads() == 1  # no pool: every kernel on the calling thread
    elif info["threads"] is None:
        pytest.fail("this build has no thread pool although none was asked for")
