"""The ``cnnbp`` command line (also ``python -m cnnbp``).

    cnnbp train [--model seed|lenet|vgg] [--epochs N] [--batch-size N] [--optimizer sgd|adam|adamw]
                [--lr X] [--threads N] [--seed N] [--data DIR]
    cnnbp info
"""

import argparse
import sys
import time

import numpy as np

DEFAULT_LR = {"sgd": 0.01, "adam": 0.001, "adamw": 0.001}


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
    t.add_argument("--model", choices=["seed", "lenet", "vgg"], default="seed")
    t.add_argument("--data", default=None, help="folder with the Fashion-MNIST IDX files (default: installed set)")
    t.add_argument("--epochs", type=_positive_int, default=2)
    t.add_argument("--batch-size", type=_positive_int, default=None, help="default: 32 (seed), 64 (lenet, vgg)")
    t.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default=None,
                   help="default: adam (seed, vgg), sgd with momentum 0.9 (lenet)")
    t.add_argument("--lr", type=_positive_float, default=None)
    t.add_argument("--threads", type=_positive_int, default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--quiet", action="store_true", help="one line per epoch, no progress bar")
    sub.add_parser("info", help="print the build and CPU configuration")
    return p


def cmd_train(args):
    import cnnbp
    from cnnbp import applications

    if args.threads:
        cnnbp.set_num_threads(args.threads)
    cnnbp.set_seed(args.seed)
    try:
        (x_train, y_train), (x_test, y_test) = cnnbp.datasets.load_fashion_mnist(args.data)
    except (FileNotFoundError, ValueError) as e:
        print(f"cnnbp train: {e}", file=sys.stderr)
        return 1
    x_train = (x_train / 255.0).astype(np.float32)[..., None]
    x_test = (x_test / 255.0).astype(np.float32)[..., None]
    shape = (28, 28, 1)
    if args.model == "vgg":  # vgg's three pooling stages want 32x32: pad the 28x28 images
        x_train = np.pad(x_train, ((0, 0), (2, 2), (2, 2), (0, 0)))
        x_test = np.pad(x_test, ((0, 0), (2, 2), (2, 2), (0, 0)))
        shape = (32, 32, 1)
    model = applications.MODELS[args.model](shape, 10)
    opt_name = args.optimizer or ("sgd" if args.model == "lenet" else "adam")
    lr = args.lr or DEFAULT_LR[opt_name]
    if opt_name == "sgd":
        opt = cnnbp.optimizers.SGD(lr, momentum=0.9)
    elif opt_name == "adam":
        opt = cnnbp.optimizers.Adam(lr)
    else:
        opt = cnnbp.optimizers.AdamW(lr)
    bs = args.batch_size or (32 if args.model == "seed" else 64)
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    print(f"cnnbp {cnnbp.__version__}: training '{args.model}' ({model.count_params():,} parameters) on "
          f"Fashion-MNIST ({len(x_train):,} train / {len(x_test):,} test images), {args.epochs} epochs, "
          f"batch {bs}, {opt_name} lr {lr}, {cnnbp.get_num_threads()} threads, {cnnbp.cpu_capability()} kernels")
    t0 = time.perf_counter()
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=bs, validation_data=(x_test, y_test),
              verbose=2 if args.quiet else 1)
    elapsed = time.perf_counter() - t0
    loss, acc = model.evaluate(x_test, y_test, verbose=0)
    print(f"test accuracy: {acc:.4f} (loss {loss:.4f}); trained in {elapsed:.1f} s")
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "info":
        import cnnbp
        cnnbp.show_config()
        return 0
    return cmd_train(args)


if __name__ == "__main__":
    sys.exit(main())
