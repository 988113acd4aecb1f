"""Plots (matplotlib, an optional extra: ``pip install cnnbp[plot]``). Each function returns a
matplotlib Figure and, given ``path``, saves it there; no GUI backend is needed."""

import numpy as np

__all__ = ["history", "confusion", "filters", "gradient_flow", "activations"]


def _figure(*args, **kwargs):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("cnnbp.plot needs matplotlib: pip install 'cnnbp[plot]' (or pip install matplotlib)") from None
    return Figure(*args, **kwargs)


def history(history, path=None):
    """Loss and accuracy per epoch, training and validation (or test: keys test_...), from a History
    (or its dict)."""
    h = getattr(history, "history", history)
    if not isinstance(h, dict) or "loss" not in h:
        raise ValueError("plot.history: expected a History from fit() or its .history dict")
    has_acc = "accuracy" in h
    fig = _figure(figsize=(10 if has_acc else 5, 4), layout="constrained")
    axes = fig.subplots(1, 2 if has_acc else 1, squeeze=False)[0]
    epochs = np.arange(1, len(h["loss"]) + 1)
    for ax, key in zip(axes, ["loss"] + (["accuracy"] if has_acc else [])):
        ax.plot(epochs, h[key], "o-", label="train")
        for prefix, label in (("val_", "validation"), ("test_", "test")):
            if f"{prefix}{key}" in h:
                ax.plot(epochs, h[f"{prefix}{key}"], "s--", label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.set_xticks(epochs if len(epochs) <= 20 else ax.get_xticks())
        ax.grid(alpha=0.3)
        ax.legend()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def confusion(y_true, y_pred, classes=None, path=None, normalize=True):
    """Confusion matrix of integer labels (rows: true class, columns: predicted)."""
    y_true = np.asarray(y_true).astype(np.int64).reshape(-1)
    y_pred = np.asarray(y_pred).astype(np.int64).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"plot.confusion: {y_true.shape[0]} true labels but {y_pred.shape[0]} predictions")
    k = int(max(y_true.max(initial=0), y_pred.max(initial=0)) + 1) if classes is None else len(classes)
    m = np.zeros((k, k), dtype=np.float64)
    np.add.at(m, (y_true, y_pred), 1)
    if normalize:
        m = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    fig = _figure(figsize=(7, 6), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(m, cmap="Blues")
    fig.colorbar(im, ax=ax)
    names = classes if classes is not None else [str(i) for i in range(k)]
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{m[i, j]:.2f}" if normalize else int(m[i, j]), ha="center", va="center",
                    color="white" if m[i, j] > m.max() / 2 else "black", fontsize=7)
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def filters(model, layer=None, path=None):
    """The learned kernels of a Conv2D layer (default: the first) as a grid, one tile per filter
    (the mean over input channels)."""
    from .layers import Conv2D
    if layer is None:
        convs = [l for l in model.layers if isinstance(l, Conv2D)]
        if not convs:
            raise ValueError("plot.filters: the model has no Conv2D layer")
        layer = convs[0]
    elif isinstance(layer, str):
        layer = model.get_layer(layer)
    if not isinstance(layer, Conv2D):
        raise ValueError(f"plot.filters: expected a Conv2D layer, got {type(layer).__name__}")
    k = np.asarray(layer.kernel).mean(axis=2)  # (kh, kw, filters)
    n = k.shape[-1]
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig = _figure(figsize=(cols * 1.2, rows * 1.2), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    lim = np.abs(k).max() or 1.0
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < n:
            ax.imshow(k[:, :, i], cmap="bwr", vmin=-lim, vmax=lim)
    fig.suptitle(f"{layer.name}: {n} filters {k.shape[0]}x{k.shape[1]}")
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def gradient_flow(monitor, path=None, tensor="kernel"):
    """Per-layer gradient norm over the training steps a GradientMonitor recorded (log scale), next
    to the update/weight ratio with the usual 1e-3 marked: vanishing gradients show as the first
    layers' lines sinking orders of magnitude below the last ones'."""
    rows = [r for r in getattr(monitor, "rows", []) if r["tensor"] == tensor]
    if not rows:
        raise ValueError(f"plot.gradient_flow: expected a GradientMonitor that recorded steps with {tensor!r} tensors")
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    fig = _figure(figsize=(11, 4.2), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    cmap = _colormap(len(layers))
    for i, name in enumerate(layers):
        mine = [r for r in rows if r["layer"] == name]
        steps = [r["step"] for r in mine]
        ax1.plot(steps, [max(r["grad_norm"], 1e-30) for r in mine], "-", color=cmap[i], label=name)
        ax2.plot(steps, [max(r["update_ratio"], 1e-30) if r["update_ratio"] == r["update_ratio"] else np.nan
                         for r in mine], "-", color=cmap[i], label=name)
    ax1.set_yscale("log")
    ax1.set_title(f"gradient norm per layer ({tensor})")
    ax2.set_yscale("log")
    ax2.axhline(1e-3, color="0.4", lw=1, ls="--")
    ax2.set_title("update / weight ratio (dashed: 1e-3)")
    for ax in (ax1, ax2):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3, which="both")
    ax1.legend(fontsize=7, ncol=2 if len(layers) > 8 else 1)
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def _colormap(n):
    try:
        from matplotlib import colormaps
        cm = colormaps["viridis"]
    except (ImportError, KeyError):  # older matplotlib
        from matplotlib import cm as _cm
        cm = _cm.get_cmap("viridis")
    return [cm(i / max(n - 1, 1)) for i in range(n)]


def activations(model, x, layers=None, path=None, bins=50):
    """Histograms of each layer's output on the batch x (inference mode): dead ReLUs show as a
    spike at 0, saturated sigmoid/tanh units as spikes at the ends. layers: names of the network's
    nodes (default: all; a Dense or Conv2D with a sigmoid/tanh/softmax activation has two, "name"
    before the activation and "name/sigmoid" after it)."""
    model._ensure_built(x)
    net = model.network
    info = net.layer_info()
    names = [d["name"] for d in info]
    if layers is None:
        layers = [n for n, d in zip(names, info) if d["kind"] != "Flatten"]
    idx = []
    for name in layers:
        if name not in names:
            raise ValueError(f"plot.activations: no layer named {name!r} with an output of its own; "
                             f"expected one of {names}")
        idx.append(names.index(name))
    net.forward(model._prepare_x(x), training=False, keep=idx)
    cols = min(4, len(idx))
    rows = int(np.ceil(len(idx) / cols))
    fig = _figure(figsize=(3.2 * cols, 2.4 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(idx):]:
        ax.axis("off")
    for ax, i in zip(axes, idx):
        a = np.asarray(net.activation(i)).ravel()
        ax.hist(a, bins=bins, color="#3b6ea8")
        zeros = float(np.mean(a == 0)) if a.size else 0.0
        ax.set_title(f"{names[i]} ({info[i]['kind']})" + (f", {zeros:.0%} zeros" if zeros > 0.05 else ""), fontsize=8)
        ax.tick_params(labelsize=7)
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
