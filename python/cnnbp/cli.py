"""The ``cnnbp`` command line (also ``python -m cnnbp``).

    cnnbp train [--model seed|lenet|vgg] [--data fashion-mnist|bundled|PATH] [--epochs N]
                [--batch-size N] [--optimizer sgd|adam|adamw] [--lr X] [--threads N] [--seed N]
                [--out DIR] [--quiet] [--inspect] [--report] [--distributed]
    cnnbp report RUN_DIR
    cnnbp evaluate MODEL [--data ...]
    cnnbp predict MODEL IMAGE... [--top K]
    cnnbp explain MODEL IMAGE... --out DIR
    cnnbp gradcheck [--model seed|lenet|...|PATH.json] [--samples N] [--batch-size N] [--seed N]
    cnnbp info

Exit status: 0 success, 1 a runtime error (missing or bad files, bad data) or, for gradcheck, a
wrong gradient; 2 bad options.
"""

import argparse
import os
import sys
import time

import numpy as np

OPTIMIZERS = ["sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "lion"]
DEFAULT_LR = {"sgd": 0.01, "adadelta": 1.0, "lion": 0.0003}   # the others: 0.001


class CliError(Exception):
    pass


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


def build_parser():
    p = argparse.ArgumentParser(prog="cnnbp", description="Train convolutional neural networks on the CPU.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a reference CNN on Fashion-MNIST and report test accuracy")
    t.add_argument("--model", default="seed",
                   help="seed, lenet, vgg, resnet20, small_resnet, or a JSON architecture (cnnbp.io.model_to_json's format)")
    t.add_argument("--data", default="fashion-mnist",
                   help="fashion-mnist (the installed set, else the bundled subset), bundled, or a folder of IDX files")
    t.add_argument("--epochs", type=_positive_int, default=2)
    t.add_argument("--batch-size", type=_positive_int, default=None, help="default: 32 (seed), 64 (lenet, vgg)")
    t.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                   help="default: adam (seed, vgg), sgd with momentum 0.9 (lenet)")
    t.add_argument("--lr", type=_positive_float, default=None)
    t.add_argument("--threads", type=_positive_int, default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default="cnnbp-run",
                   help="folder for model.cnnbp, history.csv, history.png, confusion.png (default: cnnbp-run)")
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
    e = sub.add_parser("evaluate", help="loss and accuracy of a saved model on the test set")
    e.add_argument("model")
    e.add_argument("--data", default="fashion-mnist")
    pr = sub.add_parser("predict", help="top classes for images (.npy, .png, .jpg)")
    pr.add_argument("model")
    pr.add_argument("images", nargs="+")
    pr.add_argument("--top", type=_positive_int, default=3)
    x = sub.add_parser("explain", help="saliency and Grad-CAM overlays for images")
    x.add_argument("model")
    x.add_argument("images", nargs="+")
    x.add_argument("--out", required=True)
    sub.add_parser("info", help="print the build and CPU configuration")
    rp = sub.add_parser("report", help="write report.html for an earlier 'cnnbp train' run directory")
    rp.add_argument("run_dir")
    g = sub.add_parser("gradcheck", help="check a model's backpropagated gradients against finite differences")
    g.add_argument("--model", default="seed", help="seed, lenet, vgg, resnet20, small_resnet, or a JSON architecture")
    g.add_argument("--samples", type=_positive_int, default=6, help="entries checked per weight tensor (default 6)")
    g.add_argument("--batch-size", type=_positive_int, default=4)
    g.add_argument("--seed", type=int, default=0)
    return p


def _load_data(spec):
    import cnnbp
    if spec == "bundled":
        return cnnbp.datasets.load_fashion_mnist(subset=True)
    if spec == "fashion-mnist":
        return cnnbp.datasets.load_fashion_mnist()
    if spec == "mnist":
        return cnnbp.datasets.load_mnist()
    if not os.path.exists(spec):
        raise CliError(f"--data: no such file or folder: {spec}")
    if spec.endswith(".npz"):
        return cnnbp.datasets.load_npz(spec)
    return cnnbp.datasets.load_fashion_mnist(path=spec, subset=False)


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


def _class_names(k):
    import cnnbp
    return cnnbp.datasets.FASHION_MNIST_CLASSES if k == 10 else [str(i) for i in range(k)]


def _model_from_arg(spec):
    """(model, input shape (H, W, C)) for --model: a reference model's name (10 classes) or a
    JSON architecture taking images."""
    import cnnbp
    from cnnbp import applications
    if spec in applications.MODELS:
        shape = (32, 32, 1) if spec == "vgg" else (28, 28, 1)
        return applications.MODELS[spec](shape, 10), shape
    if not spec.endswith(".json"):
        raise CliError(f"--model: expected {', '.join(applications.MODELS)} or a .json architecture, got {spec!r}")
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


def _train(args, rank, world):
    import cnnbp

    if args.threads:
        cnnbp.set_num_threads(args.threads)
    cnnbp.set_seed(args.seed)
    model, shape = _model_from_arg(args.model)
    if model.output_shape[1:] != (10,):
        raise CliError(f"--model: {args.model} must output 10 classes; it outputs {model.output_shape}")
    (x_train, y_train), (x_test, y_test) = _load_data(args.data)
    x_train, x_test = _fit_images(x_train, shape), _fit_images(x_test, shape)
    opt_name = args.optimizer or ("sgd" if args.model == "lenet" else "adam")
    lr = args.lr or DEFAULT_LR.get(opt_name, 0.001)
    if opt_name == "sgd":
        opt = cnnbp.optimizers.SGD(lr, momentum=0.9)
    else:
        opt = type(cnnbp.optimizers.get(opt_name))(learning_rate=lr)
    bs = args.batch_size or (32 if args.model == "seed" else 64)
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if rank == 0:
        os.makedirs(args.out, exist_ok=True)
    batch = f"batch {bs} per rank x {world} ranks" if args.distributed else f"batch {bs}"
    print(f"cnnbp {cnnbp.__version__}: training '{args.model}' ({model.count_params():,} parameters) on "
          f"Fashion-MNIST ({len(x_train):,} train / {len(x_test):,} test images), {args.epochs} epochs, "
          f"{batch}, {opt_name} lr {lr}, {cnnbp.get_num_threads()} threads, {cnnbp.cpu_capability()} kernels")
    cbs = [cnnbp.callbacks.CSVLogger(os.path.join(args.out, "history.csv"))]
    monitor = None
    if args.inspect:
        monitor = cnnbp.callbacks.GradientMonitor(every=100, log_dir=args.out if rank == 0 else None, warn=False,
                                                  print_fn=lambda m: print(f"\nwarning: {m}", flush=True))
        cbs.append(monitor)
    t0 = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=bs, validation_data=(x_test, y_test),
                        verbose=2 if args.quiet else 1, distributed=args.distributed, callbacks=cbs)
    elapsed = time.perf_counter() - t0
    if rank != 0:  # the weights are the same on every rank; rank 0 reports and writes
        return 0
    loss, acc = model.evaluate(x_test, y_test, verbose=0)
    model.save(os.path.join(args.out, "model.cnnbp"))
    written = ["model.cnnbp", "history.csv"]
    if monitor is not None:
        written.append("gradients.csv")
        print(f"inspect: {len(monitor.messages)} warning(s); statistics of "
              f"{len({r['step'] for r in monitor.rows})} steps in gradients.csv")
    config = {"model": args.model, "parameters": f"{model.count_params():,}", "data": args.data,
              "train / test images": f"{len(x_train):,} / {len(x_test):,}", "epochs": args.epochs, "batch": batch,
              "optimizer": f"{opt_name}, learning rate {lr}", "threads": cnnbp.get_num_threads(),
              "kernels": cnnbp.cpu_capability(), "seed": args.seed, "training time": f"{elapsed:.1f} s",
              "cnnbp": cnnbp.__version__}
    run = {"command": _command_line(args), "config": config, "data": args.data, "model": args.model,
           "classes": list(cnnbp.datasets.FASHION_MNIST_CLASSES),
           "warnings": list(monitor.messages) if monitor is not None else []}
    import json
    with open(os.path.join(args.out, "run.json"), "w") as f:
        json.dump(run, f, indent=1)
    written.append("run.json")
    if args.report:
        try:
            cnnbp.report.write(args.out, model, x_test, y_test, run["classes"], history=history, monitor=monitor,
                               config=config, command=run["command"])
            written.append("report.html")
        except ImportError as e:
            print(f"note: no report ({e})")
    try:
        pred = model.predict(x_test, batch_size=256, verbose=0).argmax(axis=1)
        cnnbp.plot.history(history, os.path.join(args.out, "history.png"))
        cnnbp.plot.confusion(y_test, pred, cnnbp.datasets.FASHION_MNIST_CLASSES, os.path.join(args.out, "confusion.png"))
        written += ["history.png", "confusion.png"]
    except ImportError as e:
        print(f"note: no plots ({e})")
    print(f"test accuracy: {acc:.4f} (loss {loss:.4f}); trained in {elapsed:.1f} s")
    print(f"wrote {', '.join(written)} to {args.out}")
    return 0


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
    _, (x_test, y_test) = _load_data(str(run.get("data", "fashion-mnist")))
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


def cmd_evaluate(args):
    import cnnbp
    model = cnnbp.load_model(args.model)
    if model.loss is None:
        model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    _, (x_test, y_test) = _load_data(args.data)
    x = _fit_images(x_test, model.input_shape[1:])
    y = y_test if model.loss.sparse else cnnbp.utils.to_categorical(y_test, model.output_shape[-1])
    loss, acc = model.evaluate(x, y, verbose=0)
    print(f"{args.model}: test accuracy {acc:.4f}, loss {loss:.4f} on {len(x):,} images")
    return 0


def _read_image(path, shape):
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


def cmd_predict(args):
    import cnnbp
    model = cnnbp.load_model(args.model, compile=False)
    shape = model.input_shape[1:]
    x = np.stack([_read_image(p, shape) for p in args.images])
    probs = model.predict(x, verbose=0).reshape(len(x), -1)
    names = _class_names(probs.shape[1])
    for path, p in zip(args.images, probs):
        top = np.argsort(-p)[: args.top]
        print(f"{path}: " + ", ".join(f"{names[i]} {p[i]:.3f}" for i in top))
    return 0


def cmd_explain(args):
    import cnnbp
    model = cnnbp.load_model(args.model, compile=False)
    shape = model.input_shape[1:]
    x = np.stack([_read_image(p, shape) for p in args.images])
    sal = cnnbp.explain.saliency(model, x)
    cam = cnnbp.explain.grad_cam(model, x)
    pred = model.predict(x, verbose=0).reshape(len(x), -1).argmax(axis=1)
    names = _class_names(model.output_shape[-1])
    os.makedirs(args.out, exist_ok=True)
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise CliError("explain writes images with matplotlib: pip install 'cnnbp[plot]'")
    for i, path in enumerate(args.images):
        fig = Figure(figsize=(9, 3), layout="constrained")
        axes = fig.subplots(1, 3)
        img = x[i].mean(axis=2)
        for ax, data, title in zip(axes, [img, sal[i], cam[i]], ["input", "saliency |d score/d x|", "Grad-CAM"]):
            ax.imshow(img, cmap="gray")
            if data is not img:
                ax.imshow(data, cmap="jet", alpha=0.5)
            ax.set_title(title)
            ax.axis("off")
        fig.suptitle(f"{os.path.basename(path)}: predicted {names[pred[i]]}")
        out = os.path.join(args.out, os.path.splitext(os.path.basename(path))[0] + "-explain.png")
        fig.savefig(out, dpi=100)
        print(f"{path}: {names[pred[i]]} -> {out}")
    return 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        if args.command == "info":
            import cnnbp
            cnnbp.show_config()
            return 0
        return {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
                "explain": cmd_explain, "gradcheck": cmd_gradcheck, "report": cmd_report}[args.command](args)
    except CliError as e:
        print(f"cnnbp {args.command}: {e}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as e:
        print(f"cnnbp {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
