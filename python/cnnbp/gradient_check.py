"""``cnnbp.gradcheck``: does backpropagation compute the true gradient of this model?

The model is copied in float64 (same architecture, same weights), its loss is backpropagated once on
the batch, and for a sample of the entries of every weight tensor the backpropagated derivative is
compared with central finite differences of the loss, ``(L(w + s) - L(w - s)) / 2s``, taken with
steps ``s = h`` and ``h/4`` and combined (Richardson) so that their O(s**2) error cancels. Where the
two disagree by more than half the tolerance, the loss is not smooth at that point (a ReLU or a max-pooling
choice flips inside the step) and the entry is counted as a kink, not checked. Differences below
the float64 rounding noise of the loss over the step count as equal. The model passed in is never
modified.
"""

import numpy as np

__all__ = ["gradcheck", "GradcheckResult"]


class GradcheckResult:
    """Outcome of :func:`gradcheck`: ``ok``, ``max_error`` (the largest relative error over every
    checked entry) and ``rows`` (one dict per weight tensor, plus one for the input when checked:
    layer, kind, weight, shape, checked, kinks, max_grad, max_error, ok)."""

    def __init__(self, rows, tol):
        self.rows = rows
        self.tol = tol
        errors = [r["max_error"] for r in rows if r["checked"]]
        self.max_error = max(errors, default=0.0)
        self.ok = all(r["ok"] for r in rows)

    def __bool__(self):
        return self.ok

    def __repr__(self):
        return f"GradcheckResult(ok={self.ok}, max_error={self.max_error:.3g}, tensors={len(self.rows)})"

    def table(self):
        """The per-tensor table as text."""
        head = ("layer", "kind", "weight", "shape", "checked", "max |grad|", "max rel. error", "")
        lines = [head]
        for r in self.rows:
            status = "ok" if r["ok"] else "WRONG"
            if r["kinks"]:
                status += f" ({r['kinks']} at kinks)"
            lines.append((r["layer"], r["kind"], r["weight"], "x".join(map(str, r["shape"])) or "()",
                          str(r["checked"]), f"{r['max_grad']:.3g}", f"{r['max_error']:.2e}", status))
        widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
        out = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in lines]
        out.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(out)


def _float64_copy(model):
    from . import io
    cfg = io._model_config(model)
    cfg["dtype"] = "float64"
    m64 = io._build({"model": cfg}, "gradcheck")
    m64.set_weights([np.asarray(w, dtype=np.float64) for w in model.get_weights()])
    for src, dst in zip(model.layers, m64.layers):
        dst.trainable = src.trainable
    return m64


def _relative_error(a, n, floor):
    return np.abs(a - n) / np.maximum(np.maximum(np.abs(a), np.abs(n)), floor)


def gradcheck(model, x, y, loss=None, samples=6, h=1e-5, tol=1e-6, check_input=True, training=True,
              seed=0, print_fn=print, _scale_gradient=None):
    """Check the model's backpropagated gradients against finite differences and print a per-layer
    table of relative errors; returns a :class:`GradcheckResult` (truthy when every check passed).

    x, y: a small batch (a few samples is enough: the check costs 4 forward and backward passes per
    checked entry). loss: the loss to differentiate; default, the one the model was compiled with.
    samples: entries checked per weight tensor (the one with the largest gradient among them; all
    of them for tensors no larger). h: the finite-difference step (float64). tol: the largest
    relative error accepted. check_input: also check the gradient with respect to x (what saliency
    maps show). training: differentiate the training-mode loss (BatchNormalization on batch
    statistics, Dropout masks fixed for the check); False, the inference-mode one. Frozen layers
    (trainable=False) are listed and skipped. print_fn=None prints nothing.
    """
    from .models import Model
    if not isinstance(model, Model):
        raise TypeError(f"gradcheck: expected a cnnbp model, got {type(model).__name__}")
    samples = int(samples)
    if samples < 1:
        raise ValueError(f"gradcheck: samples must be >= 1, got {samples}")
    if not (h > 0 and tol > 0):
        raise ValueError(f"gradcheck: h and tol must be > 0, got h={h}, tol={tol}")
    loss = loss if loss is not None else model.loss
    if loss is None:
        raise ValueError("gradcheck: the model is not compiled; pass loss=... (e.g. 'categorical_crossentropy')")
    model._ensure_built(x)
    m64 = _float64_copy(model)
    m64.compile(optimizer="sgd", loss=loss, fuse_loss=getattr(model, "_fuse", True))
    x64 = m64._prepare_x(x)
    if len(x64) == 0:
        raise ValueError("gradcheck: x is empty")
    y64 = m64._prepare_y(y, len(x64))
    net = m64.network
    x64 = np.array(x64, dtype=np.float64)

    def loss_at():
        net.forward(x64, training=training)
        return net.backward(y64)[0]

    net.forward(x64, training=training)
    base_loss, _, dx = net.backward(y64, input_grad=check_input)
    grads = np.array(net.flat_grads(), copy=True)
    params = net.flat_params()
    rng = np.random.default_rng(seed)

    def check(values, analytic, index_count):
        """(checked, kinks, max_error) over a sample of flat indices of `values` (a writable view)."""
        flat, grad = values.reshape(-1), analytic.reshape(-1)
        n = flat.size
        if n == 0:
            return 0, 0, 0.0
        if n <= index_count:
            idx = np.arange(n)
        else:
            idx = rng.choice(n, size=index_count, replace=False)
            idx[0] = int(np.argmax(np.abs(grad)))  # the entry a wrong gradient shows most in
            idx = np.unique(idx)
        # Below `floor`, differences are rounding noise: the loss's float64 rounding over the step.
        floor = max(1e-12, 1e-14 * (abs(base_loss) + 1.0) / (h / 4) / tol, 1e-9 * float(np.max(np.abs(grad))))
        worst, kinks, checked = 0.0, 0, 0
        for i in idx:
            keep = flat[i]
            diffs = []
            for step in (h, h / 4):
                flat[i] = keep + step
                up = loss_at()
                flat[i] = keep - step
                down = loss_at()
                flat[i] = keep
                diffs.append((up - down) / (2 * step))
            n1, n2 = diffs
            if _relative_error(n1, n2, floor) > tol / 2:
                # Not differentiable here: a step crosses a kink. (Smooth points differ by the
                # O(step**2) term and rounding only, far below; a kink missed by this test leaves
                # an error below tol.)
                kinks += 1
                continue
            numeric = n2 + (n2 - n1) / 15  # Richardson: the O(step**2) error cancels
            checked += 1
            worst = max(worst, float(_relative_error(grad[i], numeric, floor)))
        return checked, kinks, worst

    rows = []
    for info in net.layer_info():
        layer = m64.get_layer(info["name"]) if _has_layer(m64, info["name"]) else None
        for name, shape, offset, size in info["params"]:
            row = {"layer": info["name"], "kind": info["kind"], "weight": name, "shape": tuple(shape),
                   "checked": 0, "kinks": 0, "max_grad": 0.0, "max_error": 0.0, "ok": True}
            rows.append(row)
            if not info["trainable"] or (layer is not None and not layer.trainable):
                row["weight"] += " (frozen)"
                continue
            view = params[offset:offset + size]
            analytic = grads[offset:offset + size].copy()
            if _scale_gradient and info["name"] in _scale_gradient:  # test hook: a wrong gradient
                analytic *= _scale_gradient[info["name"]]
            row["max_grad"] = float(np.max(np.abs(analytic))) if size else 0.0
            row["checked"], row["kinks"], row["max_error"] = check(view, analytic, samples)
            row["ok"] = row["max_error"] <= tol
    if check_input:
        row = {"layer": "(input)", "kind": "", "weight": "x", "shape": tuple(x64.shape[1:]), "checked": 0,
               "kinks": 0, "max_grad": float(np.max(np.abs(dx))), "max_error": 0.0, "ok": True}
        row["checked"], row["kinks"], row["max_error"] = check(x64, dx, samples)
        row["ok"] = row["max_error"] <= tol
        rows.append(row)
    result = GradcheckResult(rows, tol)
    if print_fn is not None:
        print_fn(result.table())
        total = sum(r["checked"] for r in rows)
        if result.ok:
            print_fn(f"gradcheck: backpropagation agrees with finite differences on all {total} checked entries "
                     f"(largest relative error {result.max_error:.2e}, tolerance {tol:.0e})")
        else:
            bad = [f"{r['layer']} {r['weight']}" for r in rows if not r["ok"]]
            print_fn(f"gradcheck: WRONG gradients in {', '.join(bad)} (largest relative error "
                     f"{result.max_error:.2e}, tolerance {tol:.0e})")
    return result


def _has_layer(model, name):
    return any(l.name == name for l in model.layers)
