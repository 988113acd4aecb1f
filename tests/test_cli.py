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
    assert lines[0] == "epoch,accuracy,loss,test_accuracy,test_loss" and len(lines) == 3  # the test set is "test"
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
    assert r.returncode == 2 and "expected seed, lenet, vgg" in r.stderr  # an unknown model is a usage error


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
    assert r.returncode == 2 and "expected seed, lenet, vgg" in r.stderr  # an unknown model is a usage error


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


def _image_folder(root, classes, per_class=24, size=12, seed=0):
    """Class sub-folders of PNGs: class c has a bright square at a class-specific place."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            a = (rng.random((size, size)) * 60).astype(np.uint8)
            r = 2 + 3 * c
            a[r:r + 3, r:r + 3] = 255
            Image.fromarray(a).save(root / name / f"img{i:03d}.png")


def test_train_on_an_image_folder_with_report_and_predict(tmp_path):
    """Class names come from the folders (one of them HTML: the report escapes it), the held-out
    split is called validation, and predict shows the run's class names."""
    hostile = "<img src=x onerror=alert(1)>"
    _image_folder(tmp_path / "shapes", ["circle", "square", hostile])
    r = cli("train", "--data", "shapes", "--image-size", "16x16", "--epochs", "4", "--quiet", "--out", "run",
            "--report", "--validation-split", "0.25", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "on shapes (54 train / 18 validation images, 3 classes)" in r.stdout, r.stdout
    assert "Fashion" not in r.stdout and "validation accuracy:" in r.stdout
    assert "val_accuracy" in r.stdout
    import json
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["classes"] == sorted(["circle", "square", hostile]) and run["held_out"] == "validation"
    html = (tmp_path / "run" / "report.html").read_text()
    assert hostile not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    import browser_check   # and in a real browser: the folder's name is text, no element, no script
    if browser_check.chromium() is not None or os.environ.get("CNNBP_REQUIRE_BROWSER"):
        r = browser_check.check(str(tmp_path / "run" / "report.html"), screenshot=str(tmp_path / "shot.png"),
                                text=hostile)
        assert r["shows_text"] is True and r["matches"] == 0 and r["scripts"] == 0 and r["console"] == [], r
        assert r["decoded"] == r["images"] > 0, r
    from PIL import Image
    Image.open(tmp_path / "shapes" / "square" / "img000.png").save(tmp_path / "probe.png")
    r = cli("predict", "run/model.cnnbp", "probe.png", "--top", "1", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.split(": ")[1].split()[0] in ("circle", "square", "<img"), r.stdout
    r = cli("report", "run", cwd=tmp_path)                     # the same split again from run.json
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("layout,match", [
    ("empty", "holds neither class sub-folders of images"), ("one", "one class sub-folder"),
    ("file", "is a file but not an .npz")])
def test_data_errors_name_what_was_looked_for(tmp_path, layout, match):
    if layout == "empty":
        (tmp_path / "d").mkdir()
    elif layout == "one":
        _image_folder(tmp_path / "d", ["only"], per_class=3)
    else:
        (tmp_path / "d").write_text("x")
    r = cli("train", "--data", "d", "--epochs", "1", cwd=tmp_path)
    assert r.returncode == 1 and match in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "apt-get" not in r.stderr   # advice for Fashion-MNIST is not given for a user's folder


def _wait_for(proc, text, timeout=120):
    import time
    end, seen = time.time() + timeout, ""
    while time.time() < end:
        line = proc.stdout.readline()
        seen += line
        if text in line:
            return seen
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"never printed {text!r}: {seen}")


@pytest.mark.parametrize("earlier_run", [False, True])
def test_ctrl_c_stops_cleanly_and_writes_nothing(tmp_path, earlier_run):
    import signal
    if earlier_run:
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "keep.txt").write_text("earlier run")
    # A job started in the background (as CI may start this one) inherits SIGINT ignored; a terminal
    # user's Ctrl-C is not: give the child the default disposition, as an interactive shell does.
    proc = subprocess.Popen([sys.executable, "-u", "-m", "cnnbp", "train", "--data", "bundled", "--epochs", "50",
                             "--quiet", "--out", "run"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait_for(proc, "Epoch 2/50")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines() == ["cnnbp train: interrupted; nothing written to run"]
    left = sorted(os.listdir(tmp_path))
    assert left == (["run"] if earlier_run else []), left
    if earlier_run:
        assert os.listdir(tmp_path / "run") == ["keep.txt"]


def test_a_finished_run_replaces_the_earlier_one_whole(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "stale.txt").write_text("old")
    from cnnbp.layers import Dense, Flatten, Input
    (tmp_path / "mlp.json").write_text(cnnbp.io.model_to_json(
        cnnbp.Sequential([Input((28, 28, 1)), Flatten(), Dense(10, activation="softmax")])))
    r = cli("train", "--model", "mlp.json", "--data", "bundled", "--epochs", "1", "--quiet", "--out", "run",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "stale.txt" not in os.listdir(tmp_path / "run") and "model.cnnbp" in os.listdir(tmp_path / "run")
    assert sorted(os.listdir(tmp_path)) == ["mlp.json", "run"]


def test_usage_errors_version_and_help(tmp_path):
    (tmp_path / "afile").write_text("x")
    r = cli("train", "--out", "afile", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--out: afile is a file" in r.stderr
    r = cli("train", "--model", "resnet", cwd=tmp_path)
    assert r.returncode == 2 and "expected seed, lenet" in r.stderr and "Traceback" not in r.stderr
    r = cli("--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == f"cnnbp {cnnbp.__version__}"
    r = cli("train", "--help", cwd=tmp_path)
    text = " ".join(r.stdout.split())
    assert r.returncode == 0 and "(default: 2)" in text and "(default: cnnbp-run)" in text
    assert "(default: False)" not in text and "(default: None)" not in text
    import importlib
    parser = importlib.import_module("cnnbp.cli").build_parser()
    for action in parser._subparsers._group_actions[0].choices["train"]._actions:
        assert action.help, action.dest   # every argument explains itself


def test_predict_keeps_going_and_warns_about_0_255_floats(trained, tmp_path):
    d, _ = trained
    _, (x, _) = cnnbp.datasets.load_fashion_mnist(subset=True)
    np.save(tmp_path / "ok.npy", x[0])
    np.save(tmp_path / "bright.npy", x[1].astype(np.float32))       # 0-255 values as floats
    r = cli("predict", str(d / "run" / "model.cnnbp"), "ok.npy", "missing.png", "bright.npy", cwd=tmp_path)
    assert r.returncode == 1
    assert [l.split(":")[0] for l in r.stdout.splitlines()] == ["ok.npy", "bright.npy"]
    assert "missing.png: no such file" in r.stderr and "values in [0, 1]" in r.stderr and "Traceback" not in r.stderr


def test_explain_never_overwrites_and_names_a_zero_grad_cam(trained, tmp_path):
    d, _ = trained
    _, (x, _) = cnnbp.datasets.load_fashion_mnist(subset=True)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    np.save(tmp_path / "a" / "img.npy", x[0])
    np.save(tmp_path / "b" / "img.npy", x[5])
    r = cli("explain", str(d / "run" / "model.cnnbp"), "a/img.npy", "b/img.npy", "--out", "why", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "why")) == ["img-2-explain.png", "img-explain.png"]
    model = cnnbp.load_model(d / "run" / "model.cnnbp")
    cam = cnnbp.explain.grad_cam(model, x[[0, 5]][..., None].astype(np.float32) / 255)
    for line, c in zip(r.stdout.splitlines(), cam):
        assert ("Grad-CAM is zero everywhere" in line) == (not np.any(c)), line


def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    r = subprocess.run(f"'{sys.executable}' -m cnnbp info | head -1", shell=True, cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.stdout.startswith("cnnbp ") and r.stderr == "", r.stderr


def test_train_with_the_regularisation_recipe(tmp_path):
    """--augment, --weight-decay, --label-smoothing and --schedule cosine reach the saved model."""
    r = cli("train", "--data", "bundled", "--epochs", "1", "--quiet", "--augment", "--weight-decay", "5e-4",
            "--label-smoothing", "0.1", "--schedule", "cosine", "--out", "run", "--threads", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "cosine schedule, weight decay 0.0005, label smoothing 0.1, augmented (flip, crop)" in r.stdout
    m = cnnbp.load_model(tmp_path / "run" / "model.cnnbp")
    kinds = [type(l).__name__ for l in m.layers]
    assert kinds[:2] == ["RandomFlip", "RandomCrop"] and m.layers[1].padding == 3
    opt = m.optimizer
    assert type(opt._schedule).__name__ == "CosineDecay" and opt._schedule.decay_steps == 188
    assert opt.weight_decay == 5e-4 and m.loss.label_smoothing == 0.1
    assert opt.iterations == 188 and opt.learning_rate == 0.0          # decayed to the end
    r = cli("evaluate", str(tmp_path / "run" / "model.cnnbp"), "--data", "bundled", cwd=tmp_path)
    assert r.returncode == 0 and "test accuracy" in r.stdout


def test_train_with_mixed_precision(tmp_path):
    r = cli("train", "--data", "bundled", "--epochs", "1", "--quiet", "--mixed-precision", "--out", "run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"mixed_bfloat16 ({cnnbp.mixed_precision.path()} kernels)" in r.stdout
    assert float(r.stdout.split("test accuracy:")[1].split()[0]) > 0.6
    m = cnnbp.load_model(tmp_path / "run" / "model.cnnbp")
    assert m.dtype_policy.name == "mixed_bfloat16" and m.network.precision == "mixed_bfloat16"


def test_train_on_cifar10(tmp_path):
    from conftest import make_cifar_archive
    make_cifar_archive(tmp_path, "cifar10", n=20)
    env = dict(os.environ, CNNBP_DATA=str(tmp_path), CNNBP_NO_DOWNLOAD="1")
    r = subprocess.run([sys.executable, "-m", "cnnbp", "train", "--data", "cifar10", "--epochs", "1", "--quiet",
                        "--model", "seed", "--augment", "--out", "run"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr
    assert "CIFAR-10 (100 train / 20 test images, 10 classes)" in r.stdout
    m = cnnbp.load_model(tmp_path / "run" / "model.cnnbp")
    assert m.input_shape == (None, 32, 32, 3) and m.layers[1].padding == 4
    env.pop("CNNBP_DATA")
    env["XDG_CACHE_HOME"] = str(tmp_path / "empty")
    r = subprocess.run([sys.executable, "-m", "cnnbp", "train", "--data", "cifar100", "--out", "run2"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode != 0 and "cifar-100-python.tar.gz" in r.stderr
