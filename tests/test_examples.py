"""Every script in examples/ runs as written (one epoch each, on the installed Fashion-MNIST)."""

import os
import subprocess
import sys

import pytest

from conftest import fashion_mnist_or_skip

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("script", sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py")))
def test_example_runs(script, tmp_path):
    fashion_mnist_or_skip()
    r = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), "--epochs", "1"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "test accuracy:" in r.stdout
    acc = float(r.stdout.split("test accuracy:")[1].split()[0])
    assert acc > 0.75
