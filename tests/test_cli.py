"""The command line end to end, in subprocesses, on the bundled Fashion-MNIST subset."""

import os
import subprocess
import sys

import numpy as np
import pytest

import cnnbp


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "cnnbp", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    r = cli("train", "--data", "bundled", "--epochs", "2", "--quiet", "--out", "run", "--threads", "2", cwd=d)
    assert r.returncode == 0, r.stderr
    return d, r


def test_train_writes_model_history_and_plots(trained):
    d, r = trained
    assert sorted(os.listdir(d / "run")) == ["confusion.png", "history.csv", "history.png", "model.cnnbp", "run.json"]
    assert "Epoch 2/2" in r.stdout and "test accuracy:" in r.stdout
    acc = float(r.stdout.split("test accuracy:")[1].split()[0])
    assert acc > 0.7
    lines = (d / "run" / "history.csv").read_text().splitlines()
    assert lines[0] == "epoch,accuracy,loss,val_accuracy,val_loss" and len(lines) == 3
    for png in ("history.png", "confusion.png"):
        assert (d / "run" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_predict_and_explain(trained):
    d, _ = trained
    r = cli("evaluate", "run/model.cnnbp", "--data", "bundled", cwd=d)
    assert r.returncode == 0 and "test accuracy" in r.stdout
    _, (x, y) = cnnbp.datasets.load_fashion_mnist(subset=True)
    np.save(d / "shoe.npy", x[0])
    from PIL import Image
    Image.fromarray(x[1]).save(d / "top.png")
    r = cli("predict", "run/model.cnnbp", "shoe.npy", "top.png", "--top", "2", cwd=d)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert len(out) == 2 and out[0].startswith("shoe.npy: ") and out[0].count(",") == 1
    r = cli("explain", "run/model.cnnbp", "shoe.npy", "--out", "why", cwd=d)
    assert r.returncode == 0, r.stderr
    assert os.listdir(d / "why") == ["shoe-explain.png"]


def test_errors_and_exit_codes(trained, tmp_path):
    d, _ = trained
    r = cli("train", "--epochs", "0", cwd=tmp_path)
    assert r.returncode == 2 and "expected a positive integer" in r.stderr
    r = cli("train", "--data", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert r.returncode == 1 and "no such file or folder" in r.stderr
    r = cli("predict", "missing.cnnbp", "x.npy", cwd=tmp_path)
    assert r.returncode == 1 and "no such file" in r.stderr
    (tmp_path / "bad.cnnbp").write_bytes(b"garbage")
    r = cli("evaluate", "bad.cnnbp", cwd=tmp_path)
    assert r.returncode == 1 and "not a cnnbp model file" in r.stderr
    np.save(tmp_path / "big.npy", np.zeros((40, 40)))
    r = cli("predict", str(d / "run" / "model.cnnbp"), "big.npy", cwd=tmp_path)
    assert r.returncode == 1 and "does not fit" in r.stderr
    r = cli("info", cwd=tmp_path)
    assert r.returncode == 0 and "kernel path" in r.stdout


def test_train_a_json_architecture(tmp_path):
    from cnnbp.layers import Dense, Flatten, Input
    arch = cnnbp.io.model_to_json(cnnbp.Sequential([Input((28, 28, 1)), Flatten(), Dense(10, activation="softmax")]))
    (tmp_path / "mlp.json").write_text(arch)
    r = cli("train", "--model", "mlp.json", "--data", "bundled", "--epochs", "1", "--quiet", "--out", "o",
            "--optimizer", "nadam", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "7,850 parameters" in r.stdout and "nadam lr 0.001" in r.stdout
    assert float(r.stdout.split("test accuracy:")[1].split()[0]) > 0.6
    (tmp_path / "bad.json").write_text("{not json")
    r = cli("train", "--model", "bad.json", "--data", "bundled", cwd=tmp_path)
    assert r.returncode == 1 and "not valid JSON" in r.stderr
    r = cli("train", "--model", "resnet", cwd=tmp_path)
    assert r.returncode == 1 and "expected seed, lenet, vgg" in r.stderr


def test_gradcheck_command(tmp_path):
    r = cli("gradcheck", "--model", "lenet", "--samples", "3", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "backpropagation agrees with finite differences" in r.stdout and "conv2d_1" in r.stdout
    from cnnbp.layers import Conv2D, Dense, Flatten, Input
    arch = cnnbp.io.model_to_json(cnnbp.Sequential([Input((6, 6, 2)), Conv2D(3, 3, activation="tanh"), Flatten(),
                                                    Dense(2, activation="sigmoid")]))
    (tmp_path / "small.json").write_text(arch)
    r = cli("gradcheck", "--model", "small.json", cwd=tmp_path)
    assert r.returncode == 0 and "binary_crossentropy" in r.stdout, r.stdout + r.stderr
    r = cli("gradcheck", "--model", "nothing", cwd=tmp_path)
    assert r.returncode == 1 and "expected seed, lenet, vgg" in r.stderr


def test_train_inspect_prints_warnings_live_and_writes_gradients_csv(tmp_path):
    r = cli("train", "--data", "bundled", "--epochs", "1", "--quiet", "--inspect", "--report", "--optimizer", "sgd",
            "--lr", "0.5", "--out", "o", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "warning: the learning rate looks too high" in r.stdout
    assert "gradients.csv" in r.stdout and (tmp_path / "o" / "gradients.csv").stat().st_size > 1000
    page = (tmp_path / "o" / "report.html").read_text()
    assert "the learning rate looks too high" in page and "--inspect --report" in page


def test_report_command_for_an_earlier_run(trained, tmp_path):
    d, _ = trained
    r = cli("report", "run", cwd=d)
    assert r.returncode == 0, r.stderr
    page = (d / "run" / "report.html").read_text()
    assert "cnnbp train --data bundled --epochs 2" in page and "Ankle boot" in page
    assert "Not recorded" in page  # no --inspect in that run
    r = cli("report", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 1 and "not a 'cnnbp train' run directory" in r.stderr
