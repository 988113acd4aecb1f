"""Every script in examples/ runs as written (one epoch each, on the installed Fashion-MNIST, the
newer ones on part of it) and reaches a stated result."""

import os
import subprocess
import sys

import pytest

from conftest import fashion_mnist_or_skip

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")

pytestmark = pytest.mark.slow


# script: (extra arguments, the line's label, the bound on the number after it)
EXPECT = {
    "keras_reference_program.py": ([], "test accuracy:", lambda v: v > 0.75),
    "lenet5_sgd.py": ([], "test accuracy:", lambda v: v > 0.75),
    "conv_autoencoder.py": (["--samples", "12000"], "reconstruction mse:", lambda v: v < 0.03),
    "mobilenet_style.py": (["--samples", "12000"], "test accuracy:", lambda v: v > 0.7),
    "signal_conv1d.py": (["--samples", "6000"], "test accuracy:", lambda v: v > 0.9),
    "transfer_learning.py": (["--samples", "12000"], "test accuracy:", lambda v: v > 0.8),
}


def test_every_example_has_an_expectation():
    assert sorted(EXPECT) == sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py"))


@pytest.mark.parametrize("script", sorted(EXPECT))
def test_example_runs(script, tmp_path):
    if script != "signal_conv1d.py":   # its data is made by the script
        fashion_mnist_or_skip()
    args, label, ok = EXPECT[script]
    r = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), "--epochs", "1"] + args, cwd=tmp_path,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert label in r.stdout, r.stdout[-2000:]
    value = float(r.stdout.split(label)[1].split()[0])
    assert ok(value), (script, value)
