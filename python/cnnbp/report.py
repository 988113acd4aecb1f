"""A training run as one self-contained HTML page (``report.html``): the command and configuration,
the model summary, loss/accuracy curves, confusion matrix and per-class accuracy, the gradient flow
and warnings of a GradientMonitor, and the worst-classified test images with their saliency maps.

Images are embedded (PNG as base64 data URIs); the page has no script and loads nothing from the
network. Every string that comes from the user or the data (command line, layer and class names,
file names, warnings) is HTML-escaped, so a folder named ``<img src=x onerror=alert(1)>`` shows
as text.

    cnnbp.report.write(run_dir, model, x_test, y_test, class_names, history=h, monitor=mon,
                       config={...}, command="cnnbp train ...")
"""

import base64
import html
import io
import os

import numpy as np

__all__ = ["write"]

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; margin: 0;
       background: #f6f8fa; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; min-height: 100vh; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 32px 0 10px; border-bottom: 1px solid #d0d7de;
       padding-bottom: 4px; }
.sub { color: #57606a; margin-bottom: 18px; }
.cards { display: flex; gap: 14px; flex-wrap: wrap; margin: 14px 0; }
.card { border: 1px solid #d0d7de; border-radius: 8px; padding: 10px 16px; min-width: 130px; }
.card b { display: block; font-size: 22px; } .card span { color: #57606a; font-size: 13px; }
table { border-collapse: collapse; font-size: 14px; } td, th { padding: 4px 12px 4px 0; text-align: left;
       vertical-align: top; } th { color: #57606a; font-weight: 600; }
pre { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: 10px 12px; overflow-x: auto;
      font-size: 12.5px; line-height: 1.35; }
img.plot { max-width: 100%; height: auto; border: 1px solid #eaeef2; border-radius: 6px; }
.warn { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 6px; padding: 8px 12px; margin: 6px 0; }
.ok { color: #1a7f37; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 14px; }
.grid figure { margin: 0; border: 1px solid #d0d7de; border-radius: 8px; padding: 8px; }
.grid img { width: 84px; height: 84px; image-rendering: pixelated; margin-right: 4px; }
.grid figcaption { font-size: 13px; margin-top: 4px; } .bad { color: #cf222e; }
.bar { display: inline-block; height: 10px; background: #2f81f7; border-radius: 3px; vertical-align: middle; }
"""


def _e(s):
    return html.escape(str(s), quote=True)


def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _image_png(a, cmap=None):
    """A (H, W) or (H, W, 1|3) array in [0, 1] (or any range for cmap) as a PNG data URI."""
    from matplotlib import colormaps
    from matplotlib.image import imsave
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    buf = io.BytesIO()
    if cmap is not None:
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
        imsave(buf, colormaps[cmap](a), format="png")
    else:
        imsave(buf, np.clip(a, 0, 1), format="png", cmap="gray" if a.ndim == 2 else None, vmin=0, vmax=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class _Rows:  # the shape plot.gradient_flow reads
    def __init__(self, rows):
        self.rows = rows


def _monitor_rows_from_csv(path):
    import csv
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            row = dict(r)
            for k in ("step", "epoch"):
                row[k] = int(row[k])
            for k in ("grad_norm", "update_ratio", "weight_norm", "mean", "std", "zero_fraction"):
                row[k] = float(row[k]) if row.get(k) not in (None, "") else float("nan")
            rows.append(row)
    return rows


def write(run_dir, model, x_test, y_test, class_names=None, history=None, monitor=None, config=None, command=None,
          warnings=None, worst=12, title=None):
    """Write ``run_dir/report.html`` and return its path.

    model: the trained model (compiled); x_test, y_test: test images and integer labels;
    class_names: one per class; history: fit()'s History (or its dict, or None to read
    run_dir/history.csv); monitor: a GradientMonitor (or None to read run_dir/gradients.csv when
    present); config: {name: value} shown as the configuration table; command: the command line;
    warnings: extra warning strings; worst: how many worst-classified test images to show.
    """
    from . import explain, plot
    os.makedirs(run_dir, exist_ok=True)
    y_test = np.asarray(y_test).astype(np.int64).reshape(-1)
    prob = model.predict(x_test, batch_size=256, verbose=0)
    k = prob.shape[1]
    names = [str(c) for c in (class_names if class_names is not None else range(k))]
    if len(names) != k:
        raise ValueError(f"report: {len(names)} class names for a model with {k} outputs")
    pred = prob.argmax(axis=1)
    acc = float(np.mean(pred == y_test)) if len(y_test) else float("nan")
    h = getattr(history, "history", history)
    if h is None and os.path.exists(os.path.join(run_dir, "history.csv")):
        h = _history_from_csv(os.path.join(run_dir, "history.csv"))
    rows = getattr(monitor, "rows", None)
    if rows is None and os.path.exists(os.path.join(run_dir, "gradients.csv")):
        rows = _monitor_rows_from_csv(os.path.join(run_dir, "gradients.csv"))
    msgs = list(getattr(monitor, "messages", []) or []) + list(warnings or [])

    parts = [f"<h1>{_e(title or 'cnnbp training report')}</h1>"]
    if command:
        parts.append(f'<div class="sub"><code>{_e(command)}</code></div>')
    cards = [("test accuracy", f"{acc:.2%}"), ("test images", f"{len(y_test):,}"),
             ("parameters", f"{model.count_params():,}")]
    if h and "loss" in h:
        cards.append(("epochs", str(len(h["loss"]))))
    parts.append('<div class="cards">' + "".join(f'<div class="card"><b>{_e(v)}</b><span>{_e(n)}</span></div>'
                                                  for n, v in cards) + "</div>")
    if config:
        parts.append("<h2>Configuration</h2><table>" + "".join(
            f"<tr><th>{_e(n)}</th><td>{_e(v)}</td></tr>" for n, v in config.items()) + "</table>")
    out = []
    model.summary(print_fn=out.append)
    parts.append(f"<h2>Model</h2><pre>{_e(chr(10).join(out))}</pre>")
    if h and "loss" in h:
        parts.append(f'<h2>Training curves</h2><img class="plot" alt="loss and accuracy per epoch" '
                     f'src="{_png(plot.history(h))}">')
    parts.append('<h2>Test set: confusion matrix</h2><img class="plot" alt="confusion matrix" '
                 f'src="{_png(plot.confusion(y_test, pred, names))}">')
    per = []
    for c in range(k):
        sel = y_test == c
        a = float(np.mean(pred[sel] == c)) if sel.any() else float("nan")
        per.append(f"<tr><td>{_e(names[c])}</td><td>{int(sel.sum()):,}</td><td>{a:.1%}</td>"
                   f'<td><span class="bar" style="width:{0 if a != a else int(a * 200)}px"></span></td></tr>')
    parts.append("<h2>Accuracy per class</h2><table><tr><th>class</th><th>images</th><th>accuracy</th><th></th></tr>"
                 + "".join(per) + "</table>")
    parts.append("<h2>Gradient flow</h2>")
    if rows and any(r["tensor"] == "kernel" for r in rows):
        parts.append('<img class="plot" alt="gradient norm and update ratio per layer" '
                     f'src="{_png(plot.gradient_flow(_Rows(rows)))}">')
    else:
        parts.append("<p>Not recorded (train with <code>--inspect</code> or a <code>GradientMonitor</code>).</p>")
    parts.append("<h2>Warnings</h2>")
    if msgs:
        parts.extend(f'<div class="warn">{_e(m)}</div>' for m in msgs)
    elif rows:
        parts.append('<p class="ok">None: gradients, activations and the learning rate looked healthy.</p>')
    else:
        parts.append("<p>None recorded.</p>")
    if worst and len(y_test):
        parts.append(_worst_grid(model, x_test, y_test, prob, names, worst, explain))
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title or 'cnnbp training report')}</title><style>{_CSS}</style></head>"
            f"<body><main>{''.join(parts)}</main></body></html>\n")
    path = os.path.join(run_dir, "report.html")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(tmp, path)
    return path


def _worst_grid(model, x, y, prob, names, n, explain):
    p_true = prob[np.arange(len(y)), y]
    idx = np.argsort(p_true, kind="stable")[:n]
    xs = np.asarray(x)[idx]
    sal = explain.saliency(model, xs, class_index=prob[idx].argmax(axis=1))
    cells = []
    for j, i in enumerate(idx):
        img = xs[j]
        img = img if img.ndim == 2 or img.shape[-1] in (1, 3) else img[..., :1]
        pred = int(prob[i].argmax())
        cells.append(
            f'<figure><img alt="test image {int(i)}" src="{_image_png(img)}">'
            f'<img alt="saliency of test image {int(i)}" src="{_image_png(sal[j], cmap="inferno")}">'
            f'<figcaption>#{int(i)}: true <b>{_e(names[y[i]])}</b> ({p_true[i]:.0%}),<br>'
            f'predicted <b class="bad">{_e(names[pred])}</b> ({prob[i, pred]:.0%})</figcaption></figure>')
    return (f"<h2>The {len(idx)} worst-classified test images</h2><p>Lowest probability of the true class; "
            "right of each: its saliency map (|d score / d pixel| of the predicted class).</p>"
            f'<div class="grid">{"".join(cells)}</div>')


def _history_from_csv(path):
    import csv
    h = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            for k, v in r.items():
                if k != "epoch" and v not in (None, ""):
                    h.setdefault(k, []).append(float(v))
    return h
