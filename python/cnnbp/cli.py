"""The ``cnnbp`` command line (also ``python -m cnnbp``).

    cnnbp train [--model seed|lenet|vgg|...] [--data fashion-mnist|bundled|mnist|DIR|FILE.npz]
                [--image-size HxW] [--color-mode grayscale|rgb] [--validation-split F] [--epochs N]
                [--batch-size N] [--optimizer sgd|adam|rmsprop|...] [--lr X] [--threads N] [--seed N]
                [--out DIR] [--quiet] [--inspect] [--report] [--distributed]
    cnnbp report RUN_DIR
    cnnbp evaluate MODEL [--data ...]
    cnnbp predict MODEL IMAGE... [--top K]
    cnnbp explain MODEL IMAGE... --out DIR
    cnnbp gradcheck [--model seed|lenet|...|PATH.json] [--samples N] [--batch-size N] [--seed N]
    cnnbp info

Exit status: 0 success, 1 a runtime error (missing or bad files, bad data) or, for gradcheck, a
wrong gradient; 2 bad options (an unknown --model, --out naming a file); 130 interrupted (Ctrl-C:
training stops after the current batch and nothing is written); 141 output closed early (a pipe).
"""

import argparse
import os
import sys
import time

import numpy as np

OPTIMIZERS = ["sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "lion"]
DEFAULT_LR = {"sgd": 0.01, "adadelta": 1.0, "lion": 0.0003}   # the others: 0.001


class CliError(Exception):
    """A runtime error: one line on stderr, exit status 1."""

    status = 1


class UsageError(CliError):
    """A bad option found after parsing (an unknown model name, --out naming a file): exit 2."""

    status = 2


def _image_size(s):
    """'28', '28x28' or '32,48' -> (H, W)."""
    parts = s.lower().replace(",", "x").split("x")
    try:
        hw = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 28x28) or one size, got {s!r}") from None
    if len(hw) == 1:
        hw = hw * 2
    if len(hw) != 2 or min(hw) < 1 or max(hw) > 4096:
        raise argparse.ArgumentTypeError(f"expected HxW with sizes in 1..4096, got {s!r}")
    return tuple(hw)


def _fraction(s):
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {s!r}") from None
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {s!r}")
    return v


def _positive_int(s):
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _positive_float(s):
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}")
    return v


def _nonneg_float(s):
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not (v >= 0 and v < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {s!r}")
    return v


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows the default after each argument's help, except for flags and arguments without one."""

    def _get_help_string(self, action):
        if action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return action.help
        return super()._get_help_string(action)


def build_parser():
    from . import __version__
    fmt = _Help
    p = argparse.ArgumentParser(prog="cnnbp", description="Train convolutional neural networks on the CPU.",
                                formatter_class=fmt)
    p.add_argument("--version", action="version", version=f"cnnbp {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a CNN on Fashion-MNIST or your images and report its accuracy",
                       formatter_class=fmt)
    t.add_argument("--model", default="seed",
                   help="seed, lenet, vgg, resnet20, small_resnet, or a JSON architecture (cnnbp.io.model_to_json's format)")
    t.add_argument("--data", default="fashion-mnist",
                   help="fashion-mnist (the installed set, else the bundled subset), bundled, mnist, cifar10, "
                        "cifar100 (from CNNBP_DATA or the cache, downloaded there when missing), a folder of "
                        "IDX files, a folder of class sub-folders of images (DIR/<class>/*.png), or an .npz "
                        "with x_train, y_train, x_test, y_test")
    t.add_argument("--image-size", type=_image_size, default=None,
                   help="HxW the images of an image folder are resized to (default: the model's input, "
                        "28x28 for seed and lenet, 32x32 for vgg)")
    t.add_argument("--color-mode", choices=["grayscale", "rgb"], default="grayscale",
                   help="channels of an image folder's images (named models are built for them)")
    t.add_argument("--validation-split", type=_fraction, default=0.2,
                   help="fraction of each class of an image folder held out to validate on")
    t.add_argument("--epochs", type=_positive_int, default=2, help="passes over the training images")
    t.add_argument("--batch-size", type=_positive_int, default=None, help="32 for seed, else 64")
    t.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                   help="adam (seed, vgg, ...), sgd with momentum 0.9 (lenet)")
    t.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate: 0.01 for sgd, 1.0 for adadelta, 3e-4 for lion, else 1e-3")
    t.add_argument("--augment", action="store_true",
                   help="augment while training: pad-and-crop (padding 1/8 of the size) and, except for mnist, "
                        "horizontal flips (layers in front of the model, inactive in evaluation)")
    t.add_argument("--weight-decay", type=_nonneg_float, default=0.0,
                   help="decoupled weight decay: p -= lr * wd * p each step (Keras 3's weight_decay)")
    t.add_argument("--label-smoothing", type=_fraction, default=0.0,
                   help="label smoothing of the cross-entropy: targets (1 - s) one-hot + s / classes")
    t.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                   help="learning rate over the run: constant, or cosine decay from --lr to 0 over all steps")
    t.add_argument("--mixed-precision", action="store_true",
                   help="the mixed_bfloat16 policy: convolutions and dense layers in bfloat16 with float32 "
                        "accumulation (fast on CPUs with AVX512_BF16; see docs/performance.md)")
    t.add_argument("--threads", type=_positive_int, default=None, help="kernel threads (default: all usable cores)")
    t.add_argument("--seed", type=int, default=0, help="seed of the weights, the shuffling and the split")
    t.add_argument("--out", default="cnnbp-run",
                   help="folder for model.cnnbp, history.csv, history.png, confusion.png, run.json; written "
                        "whole at the end (an earlier run there is replaced only then)")
    t.add_argument("--quiet", action="store_true", help="one line per epoch, no progress bar")
    t.add_argument("--report", action="store_true",
                   help="also write OUT/report.html: one self-contained page with the configuration, curves, confusion "
                        "matrix, per-class accuracy, gradient flow, warnings and the worst-classified test images")
    t.add_argument("--inspect", action="store_true",
                   help="monitor every layer's activations and gradients (every 100 steps; OUT/gradients.csv) and "
                        "print warnings (vanishing/exploding gradients, dead ReLUs, saturation, learning rate) live")
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI ranks: run as 'mpiexec -n N cnnbp train --distributed'; "
                        "--batch-size is per rank; rank 0 prints and writes the files")
    e = sub.add_parser("evaluate", help="loss and accuracy of a saved model on the test set", formatter_class=fmt)
    e.add_argument("model", help="a file written by 'cnnbp train' or model.save")
    e.add_argument("--data", default="fashion-mnist", help="as for train: the test images")
    pr = sub.add_parser("predict", help="top classes for images (.npy, .png, .jpg)", formatter_class=fmt)
    pr.add_argument("model", help="a file written by 'cnnbp train' or model.save")
    pr.add_argument("images", nargs="+", help="images: .npy arrays (H, W) or (H, W, C), or .png/.jpg/...")
    pr.add_argument("--top", type=_positive_int, default=3, help="classes shown per image")
    x = sub.add_parser("explain", help="saliency and Grad-CAM overlays for images", formatter_class=fmt)
    x.add_argument("model", help="a file written by 'cnnbp train' or model.save")
    x.add_argument("images", nargs="+", help="images, as for predict")
    x.add_argument("--out", required=True, help="folder for one IMAGE-explain.png per image")
    sub.add_parser("info", help="print the build and CPU configuration", formatter_class=fmt)
    ex = sub.add_parser("export", help="write a saved model as ONNX (needs: pip install onnx)", formatter_class=fmt)
    ex.add_argument("model", help="a file written by 'cnnbp train' or model.save")
    ex.add_argument("--onnx", required=True, help="the .onnx file to write (input 'input' NHWC, output 'output', "
                                                    "dynamic batch)")
    ex.add_argument("--opset", type=int, default=17, help="ONNX opset, 17 to 21")
    rp = sub.add_parser("report", help="write report.html for an earlier 'cnnbp train' run directory",
                        formatter_class=fmt)
    rp.add_argument("run_dir", help="a folder written by 'cnnbp train'")
    g = sub.add_parser("gradcheck", help="check a model's backpropagated gradients against finite differences",
                       formatter_class=fmt)
    g.add_argument("--model", default="seed", help="seed, lenet, vgg, resnet20, small_resnet, or a JSON architecture")
    g.add_argument("--samples", type=_positive_int, default=6, help="entries checked per weight tensor")
    g.add_argument("--batch-size", type=_positive_int, default=4, help="random images per check")
    g.add_argument("--seed", type=int, default=0, help="seed of the weights, images and entries")
    return p


class _Data:
    """Training and held-out images for the command line: uint8 (N, H, W[, C]) and int labels."""

    def __init__(self, train, held, classes, name, held_name="test"):
        (self.x_train, self.y_train), (self.x_test, self.y_test) = train, held
        self.classes, self.name, self.held_name = list(classes), name, held_name


def _is_image_folder(path):
    from .datasets import _IMAGE_EXT
    for d in sorted(os.listdir(path)):
        sub = os.path.join(path, d)
        if os.path.isdir(sub) and any(f.lower().endswith(_IMAGE_EXT) for f in os.listdir(sub)):
            return True
    return False


def _split(y, fraction, seed):
    """Per class, a seeded fraction held out: (train indices, held-out indices), both sorted."""
    rng = np.random.default_rng([seed, 12345])
    held = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = int(round(len(idx) * fraction))
        held.extend(rng.permutation(idx)[:k])
    held = np.sort(np.asarray(held, dtype=np.int64))
    mask = np.ones(len(y), bool)
    mask[held] = False
    return np.flatnonzero(mask), held


def _load_data(spec, image_size=None, color_mode="grayscale", split=0.2, seed=0):
    import cnnbp
    from cnnbp.datasets import FASHION_MNIST_CLASSES as FASHION
    if spec == "bundled":
        return _Data(*cnnbp.datasets.load_fashion_mnist(subset=True), FASHION, "Fashion-MNIST (bundled subset)")
    if spec == "fashion-mnist":
        return _Data(*cnnbp.datasets.load_fashion_mnist(), FASHION, "Fashion-MNIST")
    if spec == "mnist":
        return _Data(*cnnbp.datasets.load_mnist(), [str(i) for i in range(10)], "MNIST")
    if spec in ("cifar10", "cifar100"):
        try:
            (xtr, ytr), (xte, yte) = getattr(cnnbp.datasets, "load_" + spec)()
        except (FileNotFoundError, ValueError) as e:
            raise CliError(f"--data {spec}: {e}") from None
        names = cnnbp.datasets.CIFAR10_CLASSES if spec == "cifar10" else [str(i) for i in range(100)]
        return _Data((xtr, ytr[:, 0]), (xte, yte[:, 0]), names, spec.upper().replace("CIFAR", "CIFAR-"))
    if not os.path.exists(spec):
        raise CliError(f"--data: no such file or folder: {spec} (expected fashion-mnist, bundled, mnist, a folder "
                       "of class sub-folders of images, a folder of IDX files, or an .npz file)")
    name = os.path.basename(os.path.normpath(spec)) or spec
    if spec.endswith(".npz"):
        train, test = cnnbp.datasets.load_npz(spec)
        k = int(max(train[1].max(), test[1].max())) + 1 if len(train[1]) else 0
        return _Data(train, test, [str(i) for i in range(k)], name)
    if not os.path.isdir(spec):
        raise CliError(f"--data: {spec} is a file but not an .npz; pass a folder of class sub-folders of images, "
                       "a folder of IDX files or an .npz with x_train, y_train, x_test, y_test")
    if _is_image_folder(spec):
        x, y, classes = cnnbp.datasets.load_image_folder(spec, image_size=image_size, color_mode=color_mode)
        if len(classes) < 2:
            raise CliError(f"--data: {spec} has one class sub-folder ({classes[0]}); a classifier needs two or more")
        tr, te = _split(y, split, seed)
        if not len(te) or not len(tr):
            raise CliError(f"--data: {spec} has {len(y)} images: too few to hold out {split:.0%} for validation")
        return _Data((x[tr], y[tr]), (x[te], y[te]), classes, name, held_name="validation")
    from .datasets import _FILES
    try:
        (xtr, ytr), (xte, yte) = cnnbp.datasets.load_fashion_mnist(path=spec, subset=False)
    except FileNotFoundError:
        from .datasets import _IMAGE_EXT
        raise CliError(f"--data: {spec} holds neither class sub-folders of images ({spec}/<class>/*"
                       f"{'|'.join(_IMAGE_EXT)}) nor the four IDX files ({', '.join(_FILES.values())}, .gz or "
                       "plain)") from None
    k = int(max(ytr.max(), yte.max())) + 1 if len(ytr) else 0
    fashion = k == 10 and "fashion" in os.path.abspath(spec).lower()
    return _Data((xtr, ytr), (xte, yte), FASHION if fashion else [str(i) for i in range(k)], name)


def _fit_images(x, shape):
    """uint8 (N, 28, 28) images -> float32 (N, H, W, C) in [0, 1] for a model input (H, W, C)."""
    x = np.asarray(x, dtype=np.float32) / 255.0
    if x.ndim == 3:
        x = x[..., None]
    h, w, c = shape
    if x.shape[1] > h or x.shape[2] > w:
        raise CliError(f"images of {x.shape[1]}x{x.shape[2]} do not fit the model input {h}x{w}")
    ph, pw = h - x.shape[1], w - x.shape[2]
    if ph or pw:  # center on a zero border (28x28 images into vgg's 32x32)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    if x.shape[3] != c:
        if x.shape[3] == 1:
            x = np.repeat(x, c, axis=3)
        else:
            raise CliError(f"images have {x.shape[3]} channels, the model takes {c}")
    return x


def _class_names(k, model_path=None):
    """The class names of the run a model file was written by (its run.json), else Fashion-MNIST's
    for 10 classes, else the class numbers."""
    import json
    import cnnbp
    if model_path is not None:
        try:
            with open(os.path.join(os.path.dirname(os.path.abspath(model_path)), "run.json")) as f:
                names = json.load(f).get("classes")
            if isinstance(names, list) and len(names) == k and all(isinstance(n, str) for n in names):
                return names
        except (OSError, ValueError, AttributeError):
            pass
    return cnnbp.datasets.FASHION_MNIST_CLASSES if k == 10 else [str(i) for i in range(k)]


def _model_from_arg(spec, shape=None, classes=10):
    """(model, input shape (H, W, C)) for --model: a reference model's name, built for `shape`
    (default 28x28x1, vgg 32x32x1) and `classes`, or a JSON architecture taking images."""
    import cnnbp
    from cnnbp import applications
    if spec in applications.MODELS:
        shape = shape or ((32, 32, 1) if spec == "vgg" else (28, 28, 1))
        try:
            return applications.MODELS[spec](shape, classes), shape
        except ValueError as e:
            raise CliError(f"--model {spec}: cannot be built for {shape[0]}x{shape[1]}x{shape[2]} images: {e}") from None
    if not spec.endswith(".json"):
        raise UsageError(f"--model: expected {', '.join(applications.MODELS)} or a .json architecture, got {spec!r}")
    try:
        with open(spec) as f:
            model = cnnbp.io.model_from_json(f.read())
    except OSError as e:
        raise CliError(f"--model: cannot read {spec}: {e.strerror}") from None
    shape = tuple(model.input_shape[1:])
    if len(shape) != 3:
        raise CliError(f"--model: {spec} must take (H, W, C) images; it takes {model.input_shape}")
    return model, shape


def cmd_gradcheck(args):
    """Backpropagated gradients of a model against finite differences, on random images."""
    import cnnbp
    cnnbp.set_seed(args.seed)
    model, shape = _model_from_arg(args.model)
    rng = np.random.default_rng(args.seed)
    x = rng.random((args.batch_size,) + shape).astype(np.float32)
    out = model.output_shape[1:]
    act = model.layers[-1].get_config().get("activation")
    if len(out) == 1 and act == "softmax":
        loss, y = "sparse_categorical_crossentropy", rng.integers(0, out[0], args.batch_size)
    elif act == "sigmoid":
        loss, y = "binary_crossentropy", rng.integers(0, 2, (args.batch_size,) + out).astype(np.float32)
    else:
        loss, y = "mean_squared_error", rng.standard_normal((args.batch_size,) + out).astype(np.float32)
    print(f"cnnbp gradcheck: '{args.model}' ({model.count_params():,} parameters), {loss}, a batch of "
          f"{args.batch_size} random images, {args.samples} entries per weight tensor, float64")
    res = cnnbp.gradcheck(model, x, y, loss=loss, samples=args.samples, seed=args.seed)
    return 0 if res.ok else 1


def cmd_train(args):
    if not args.distributed:
        return _train(args, 0, 1)
    import contextlib
    from cnnbp import distributed
    try:
        distributed.init()
    except ImportError as e:
        raise CliError(f"--distributed: {e}") from None
    rank, size = distributed.rank(), distributed.world_size()
    if rank == 0:
        return _train(args, rank, size)
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        return _train(args, rank, size)


def _default_shape(args):
    """The input shape a named model is built for: the --image-size and --color-mode of an image
    folder, CIFAR's 32x32x3, else the model's usual one."""
    if args.data in ("cifar10", "cifar100") and args.image_size is None:
        return (32, 32, 3)
    if args.image_size is None and args.color_mode == "grayscale":
        return None
    h, w = args.image_size or ((32, 32) if args.model == "vgg" else (28, 28))
    return (h, w, 3 if args.color_mode == "rgb" else 1)


def _recipe(args):
    """The regularisation options of a run, as the report and the first line show them."""
    parts = [f"{args.schedule} schedule"] if args.schedule != "constant" else []
    if args.weight_decay:
        parts.append(f"weight decay {args.weight_decay:g}")
    if args.label_smoothing:
        parts.append(f"label smoothing {args.label_smoothing:g}")
    if args.augment:
        parts.append("augmented" + (" (crop)" if args.data == "mnist" else " (flip, crop)"))
    if getattr(args, "mixed_precision", False):
        import cnnbp
        parts.append(f"mixed_bfloat16 ({cnnbp.mixed_precision.path()} kernels)")
    return "".join(", " + p for p in parts)


def _augmented(model, shape, flip=True):
    """model behind pad-and-crop (padding 1/8 of the smaller side, at least 1) and, with flip,
    horizontal flips: one Sequential, the augmentation inactive outside training."""
    import cnnbp
    from cnnbp import layers as L
    h, w, _ = shape
    aug = [L.RandomCrop(h, w, padding=max(1, min(h, w) // 8), name="augment_crop")]
    if flip:
        aug.insert(0, L.RandomFlip("horizontal", name="augment_flip"))
    return cnnbp.Sequential([L.Input(shape)] + aug + [model], name=model.name)


def _check_out(out):
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out: {out} is a file; name a folder (it is created, or an earlier run in it is replaced)")


class _RunDir:
    """The run is written into a hidden folder next to --out and moved into place when complete:
    an interrupted or failed run leaves --out as it was (absent, or the previous run)."""

    def __init__(self, out, active):
        self.out = out
        parent, base = os.path.split(os.path.abspath(out))
        self.tmp = os.path.join(parent, f".{base}.partial-{os.getpid()}")
        self.active = active
        if active:
            os.makedirs(parent, exist_ok=True)
            self._remove(self.tmp)
            os.makedirs(self.tmp)

    @staticmethod
    def _remove(path):
        import shutil
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)

    def commit(self):
        if not self.active:
            return
        old = None
        if os.path.isdir(self.out):
            old = self.tmp.replace(".partial-", ".old-")
            self._remove(old)
            os.rename(self.out, old)
        os.rename(self.tmp, self.out)
        if old:
            self._remove(old)
        self.active = False

    def discard(self):
        if self.active:
            self._remove(self.tmp)
            self.active = False


def _train(args, rank, world):
    import cnnbp

    _check_out(args.out)
    if args.threads:
        cnnbp.set_num_threads(args.threads)
    cnnbp.set_seed(args.seed)
    cnnbp.mixed_precision.set_global_policy("mixed_bfloat16" if args.mixed_precision else "float32")
    if args.model not in cnnbp.applications.MODELS and not args.model.endswith(".json"):
        _model_from_arg(args.model)  # an unknown name is a usage error, before any data is read
    image_size = args.image_size
    if image_size is None and args.model.endswith(".json"):
        image_size = _model_from_arg(args.model)[1][:2]
    elif image_size is None:
        image_size = (32, 32) if args.model == "vgg" else (28, 28)
    data = _load_data(args.data, image_size, args.color_mode, args.validation_split, args.seed)
    k = len(data.classes)
    model, shape = _model_from_arg(args.model, _default_shape(args), k)
    if model.output_shape[1:] != (k,):
        raise CliError(f"--model: {args.model} must output {k} classes for {data.name}; it outputs "
                       f"{model.output_shape}")
    x_train, x_test = _fit_images(data.x_train, shape), _fit_images(data.x_test, shape)
    y_train, y_test = data.y_train, data.y_test
    opt_name = args.optimizer or ("sgd" if args.model == "lenet" else "adam")
    lr = args.lr or DEFAULT_LR.get(opt_name, 0.001)
    bs = args.batch_size or (32 if args.model == "seed" else 64)
    rate = lr
    if args.schedule == "cosine":
        steps = args.epochs * -(-len(x_train) // (bs * world))
        rate = cnnbp.optimizers.schedules.CosineDecay(lr, steps)
    decay = {"weight_decay": args.weight_decay} if args.weight_decay else {}
    if opt_name == "sgd":
        opt = cnnbp.optimizers.SGD(rate, momentum=0.9, **decay)
    else:
        opt = type(cnnbp.optimizers.get(opt_name))(learning_rate=rate, **decay)
    if args.augment:
        model = _augmented(model, shape, flip=args.data != "mnist")
    loss = cnnbp.losses.SparseCategoricalCrossentropy(label_smoothing=args.label_smoothing)
    model.compile(optimizer=opt, loss=loss, metrics=["accuracy"])
    model._val_prefix = "test_" if data.held_name == "test" else "val_"
    run_dir = _RunDir(args.out, rank == 0)
    try:
        written = _train_into(args, run_dir.tmp, model, data, x_train, y_train, x_test, y_test, opt_name, lr, bs,
                              world, rank)
        run_dir.commit()
    except BaseException:
        run_dir.discard()
        raise
    if written:
        print(f"wrote {', '.join(written)} to {args.out}")
    return 0


def _train_into(args, out, model, data, x_train, y_train, x_test, y_test, opt_name, lr, bs, world, rank):
    import cnnbp
    batch = f"batch {bs} per rank x {world} ranks" if args.distributed else f"batch {bs}"
    print(f"cnnbp {cnnbp.__version__}: training '{args.model}' ({model.count_params():,} parameters) on "
          f"{data.name} ({len(x_train):,} train / {len(x_test):,} {data.held_name} images, {len(data.classes)} "
          f"classes), {args.epochs} epochs, {batch}, {opt_name} lr {lr}{_recipe(args)}, {cnnbp.get_num_threads()} threads, "
          f"{cnnbp.cpu_capability()} kernels")
    cbs = [cnnbp.callbacks.CSVLogger(os.path.join(out, "history.csv"))]   # it writes on rank 0 only
    monitor = None
    if args.inspect:
        monitor = cnnbp.callbacks.GradientMonitor(every=100, log_dir=out if rank == 0 else None, warn=False,
                                                  print_fn=lambda m: print(f"\nwarning: {m}", flush=True))
        cbs.append(monitor)
    t0 = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=bs, validation_data=(x_test, y_test),
                        verbose=2 if args.quiet else 1, distributed=args.distributed, callbacks=cbs)
    elapsed = time.perf_counter() - t0
    if rank != 0:  # the weights are the same on every rank; rank 0 reports and writes
        return []
    loss, acc = model.evaluate(x_test, y_test, verbose=0)
    model.save(os.path.join(out, "model.cnnbp"))
    written = ["model.cnnbp", "history.csv"]
    if monitor is not None:
        written.append("gradients.csv")
        print(f"inspect: {len(monitor.messages)} warning(s); statistics of "
              f"{len({r['step'] for r in monitor.rows})} intervals of {monitor.every} steps in gradients.csv")
    config = {"model": args.model, "parameters": f"{model.count_params():,}", "data": data.name,
              f"train / {data.held_name} images": f"{len(x_train):,} / {len(x_test):,}", "epochs": args.epochs,
              "batch": batch, "optimizer": f"{opt_name}, learning rate {lr}" + _recipe(args),
              "threads": cnnbp.get_num_threads(),
              "kernels": cnnbp.cpu_capability(), "seed": args.seed, "training time": f"{elapsed:.1f} s",
              "cnnbp": cnnbp.__version__}
    run = {"command": _command_line(args), "config": config, "data": args.data, "model": args.model,
           "classes": data.classes, "held_out": data.held_name,
           "data_options": {"image_size": list(model.input_shape[1:3]), "color_mode": args.color_mode,
                            "validation_split": args.validation_split, "seed": args.seed},
           "warnings": list(monitor.messages) if monitor is not None else []}
    import json
    with open(os.path.join(out, "run.json"), "w") as f:
        json.dump(run, f, indent=1)
    written.append("run.json")
    if args.report:
        try:
            cnnbp.report.write(out, model, x_test, y_test, run["classes"], history=history, monitor=monitor,
                               config=config, command=run["command"])
            written.append("report.html")
        except ImportError as e:
            print(f"note: no report ({e})")
    try:
        pred = model.predict(x_test, batch_size=256, verbose=0).argmax(axis=1)
        cnnbp.plot.history(history, os.path.join(out, "history.png"))
        cnnbp.plot.confusion(y_test, pred, data.classes, os.path.join(out, "confusion.png"))
        written += ["history.png", "confusion.png"]
    except ImportError as e:
        print(f"note: no plots ({e})")
    print(f"{data.held_name} accuracy: {acc:.4f} (loss {loss:.4f}); trained in {elapsed:.1f} s")
    return written


def _command_line(args):
    import shlex
    return "cnnbp " + " ".join(shlex.quote(a) for a in getattr(args, "argv", []) or [])


def cmd_report(args):
    import json
    import cnnbp
    try:
        with open(os.path.join(args.run_dir, "run.json")) as f:
            run = json.load(f)
    except FileNotFoundError:
        raise CliError(f"{args.run_dir} is not a 'cnnbp train' run directory (no run.json)") from None
    except ValueError as e:
        raise CliError(f"{args.run_dir}/run.json: {e}") from None
    if not isinstance(run, dict):
        raise CliError(f"{args.run_dir}/run.json: expected an object")
    model = cnnbp.load_model(os.path.join(args.run_dir, "model.cnnbp"))
    opts = run.get("data_options") if isinstance(run.get("data_options"), dict) else {}
    try:
        data = _load_data(str(run.get("data", "fashion-mnist")), tuple(opts.get("image_size", (28, 28))),
                          str(opts.get("color_mode", "grayscale")), float(opts.get("validation_split", 0.2)),
                          int(opts.get("seed", 0)))
    except (TypeError, ValueError) as e:
        raise CliError(f"{args.run_dir}/run.json: bad data options ({e})") from None
    x_test, y_test = data.x_test, data.y_test
    x = _fit_images(x_test, model.input_shape[1:])
    classes = run.get("classes")
    if not isinstance(classes, list) or len(classes) != model.output_shape[-1]:
        classes = None
    config = run.get("config") if isinstance(run.get("config"), dict) else None
    warnings = [str(w) for w in run.get("warnings", []) if isinstance(w, str)]
    path = cnnbp.report.write(args.run_dir, model, x, y_test, classes, config=config,
                              command=str(run.get("command", "")), warnings=warnings)
    print(f"wrote {path}")
    return 0


def cmd_export(args):
    import cnnbp
    model = cnnbp.load_model(args.model, compile=False)
    try:
        path = cnnbp.io.export_onnx(model, args.onnx, opset=args.opset)
    except (ImportError, NotImplementedError) as e:
        raise CliError(str(e)) from None
    print(f"wrote {path} (opset {args.opset}; input {tuple(model.input_shape)}, output {tuple(model.output_shape)}, "
          "channels last)")
    return 0


def cmd_evaluate(args):
    import cnnbp
    model = cnnbp.load_model(args.model)
    if model.loss is None:
        model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    data = _load_data(args.data, tuple(model.input_shape[1:3]),
                      "rgb" if model.input_shape[-1] == 3 else "grayscale")
    x_test, y_test = data.x_test, data.y_test
    x = _fit_images(x_test, model.input_shape[1:])
    y = y_test if model.loss.sparse else cnnbp.utils.to_categorical(y_test, model.output_shape[-1])
    loss, acc = model.evaluate(x, y, verbose=0)[:2]
    print(f"{args.model}: {data.held_name} accuracy {acc:.4f}, loss {loss:.4f} on {len(x):,} images of {data.name}")
    return 0


def _read_image(path, shape):
    if not os.path.exists(path):
        raise CliError(f"{path}: no such file")
    h, w, c = shape
    if path.endswith(".npy"):
        try:
            a = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise CliError(f"{path}: not a readable .npy array ({e})") from None
        a = np.asarray(a)
        if a.ndim == 2:
            a = a[..., None]
        if a.ndim != 3:
            raise CliError(f"{path}: expected an image array (H, W) or (H, W, C), got shape {a.shape}")
        scale = 255.0 if a.dtype == np.uint8 else 1.0
        a = a.astype(np.float32) / scale
        if scale == 1.0 and a.size and float(np.nanmax(a)) > 1.5:
            print(f"warning: {path}: a float image with values up to {float(np.nanmax(a)):.4g}; the model takes "
                  "values in [0, 1] (0-255 data: divide by 255, or save it as uint8)", file=sys.stderr)
    else:
        try:
            from PIL import Image
        except ImportError:
            raise CliError(f"{path}: reading images needs Pillow (pip install pillow); .npy arrays need nothing")
        try:
            img = Image.open(path)
            img = img.convert("L" if c == 1 else "RGB").resize((w, h))
        except (OSError, ValueError) as e:
            raise CliError(f"{path}: cannot read the image ({e})") from None
        a = np.asarray(img, dtype=np.float32) / 255.0
        if a.ndim == 2:
            a = a[..., None]
    if a.shape[2] != c and a.shape[2] == 1:
        a = np.repeat(a, c, axis=2)
    if a.shape[:2] != (h, w):
        ph, pw = h - a.shape[0], w - a.shape[1]
        if ph < 0 or pw < 0:
            raise CliError(f"{path}: image of {a.shape[0]}x{a.shape[1]} does not fit the model input {h}x{w}")
        a = np.pad(a, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    if a.shape[2] != c:
        raise CliError(f"{path}: image has {a.shape[2]} channels, the model takes {c}")
    return a


def _read_images(paths, shape):
    """(images, the paths read, how many failed): an image that cannot be read is reported on
    stderr and skipped, so that the others still get an answer."""
    images, ok, failed = [], [], 0
    for p in paths:
        try:
            images.append(_read_image(p, shape))
            ok.append(p)
        except (CliError, OSError) as e:
            print(f"error: {e}" if isinstance(e, CliError) else f"error: {p}: {e.strerror or e}", file=sys.stderr)
            failed += 1
    return (np.stack(images) if images else None), ok, failed


def cmd_predict(args):
    import cnnbp
    model = cnnbp.load_model(args.model, compile=False)
    shape = model.input_shape[1:]
    x, paths, failed = _read_images(args.images, shape)
    if x is not None:
        probs = model.predict(x, verbose=0).reshape(len(x), -1)
        names = _class_names(probs.shape[1], args.model)
        for path, p in zip(paths, probs):
            top = np.argsort(-p)[: args.top]
            print(f"{path}: " + ", ".join(f"{names[i]} {p[i]:.3f}" for i in top))
    return 1 if failed else 0


def _unique_outputs(paths, folder, suffix):
    """One output file per input: IMAGE-explain.png, and IMAGE-2-explain.png, ... when two inputs
    share a stem (a/x.png and b/x.png), so that no output overwrites another."""
    out, used = [], set()
    for p in paths:
        stem = os.path.splitext(os.path.basename(p))[0]
        name, n = f"{stem}{suffix}", 1
        while name in used or (n > 1 and os.path.exists(os.path.join(folder, name))):
            n += 1
            name = f"{stem}-{n}{suffix}"
        used.add(name)
        out.append(os.path.join(folder, name))
    return out


def cmd_explain(args):
    import cnnbp
    model = cnnbp.load_model(args.model, compile=False)
    shape = model.input_shape[1:]
    x, paths, failed = _read_images(args.images, shape)
    if x is None:
        return 1
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise CliError("explain writes images with matplotlib: pip install 'cnnbp[plot]'")
    sal = cnnbp.explain.saliency(model, x)
    cam = cnnbp.explain.grad_cam(model, x)
    probs = model.predict(x, verbose=0).reshape(len(x), -1)
    pred = probs.argmax(axis=1)
    names = _class_names(probs.shape[1], args.model)
    os.makedirs(args.out, exist_ok=True)
    outs = _unique_outputs(paths, args.out, "-explain.png")
    for i, path in enumerate(paths):
        fig = Figure(figsize=(12, 3.2), layout="constrained")
        axes = fig.subplots(1, 4, width_ratios=[1, 1, 1, 1.1])
        img = x[i].mean(axis=2)
        cam_zero = not np.any(cam[i])
        for ax, data, title in zip(axes[:3], [img, sal[i], cam[i]],
                                   ["input", "saliency |d score/d x|", "Grad-CAM"]):
            shown = ax.imshow(img, cmap="gray")
            if data is not img:
                shown = ax.imshow(data, cmap="jet", alpha=0.5)
            fig.colorbar(shown, ax=ax, shrink=0.8)
            ax.set_title(title)
            ax.axis("off")
        if cam_zero:
            axes[2].text(0.5, 0.5, "Grad-CAM is zero everywhere\n(no positive evidence in\nthe last conv layer)",
                         transform=axes[2].transAxes, ha="center", va="center", fontsize=8,
                         bbox=dict(facecolor="white", alpha=0.8))
        top = np.argsort(-probs[i])[:5]
        axes[3].barh([names[k] for k in top][::-1], probs[i][top][::-1], color="tab:blue")
        axes[3].set_xlim(0, 1)
        axes[3].set_title("class probabilities")
        fig.suptitle(f"{os.path.basename(path)}: predicted {names[pred[i]]} ({probs[i][pred[i]]:.3f})")
        fig.savefig(outs[i], dpi=100)
        note = " (Grad-CAM is zero everywhere: the last conv layer has no positive evidence for this class)" \
            if cam_zero else ""
        print(f"{path}: {names[pred[i]]} {probs[i][pred[i]]:.3f} -> {outs[i]}{note}")
    return 1 if failed else 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        try:
            if args.command == "info":
                import cnnbp
                cnnbp.show_config()
                return 0
            return {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
                    "explain": cmd_explain, "gradcheck": cmd_gradcheck, "report": cmd_report,
                    "export": cmd_export}[args.command](args)
        except CliError as e:
            print(f"cnnbp {args.command}: {e}", file=sys.stderr)
            return e.status
        except (FileNotFoundError, ValueError) as e:
            print(f"cnnbp {args.command}: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            sys.stdout.flush()
            what = f"; nothing written to {args.out}" if args.command == "train" else ""
            print(f"\ncnnbp {args.command}: interrupted{what}", file=sys.stderr)
            return 130
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (cnnbp info | head -1): stop quietly. Point stdout at /dev/null so
        # that the interpreter's final flush does not complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
