"""Callbacks with Keras's hook names. ``fit`` calls them in order; setting
``self.model.stop_training = True`` ends training after the current batch or epoch."""

import math

import numpy as np

__all__ = ["Callback", "History", "LossThreshold", "EarlyStopping", "TerminateOnNaN", "LambdaCallback",
           "ModelCheckpoint", "ReduceLROnPlateau", "LearningRateScheduler", "CSVLogger", "GradientMonitor",
           "TrainingWarning"]


class Callback:
    """Base class with Keras's hook names; ``self.model`` is the model being trained."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_train_batch_begin(self, batch, logs=None): pass
    def on_train_batch_end(self, batch, logs=None): pass
    def on_test_begin(self, logs=None): pass
    def on_test_end(self, logs=None): pass
    def on_predict_begin(self, logs=None): pass
    def on_predict_end(self, logs=None): pass


class History(Callback):
    """Per-epoch logs: ``history.history['loss']``, ``['accuracy']``, ``['val_loss']``, ..."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []
        self.history = {}

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


class LossThreshold(Callback):
    """Stop when the monitored value (default: the training loss of an epoch) reaches ``value``.
    With ``per_batch=True`` the loss of each batch is checked as well."""

    def __init__(self, value, monitor="loss", per_batch=False):
        super().__init__()
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"LossThreshold: value must be a finite number, got {value!r}")
        self.value = float(value)
        self.monitor = monitor
        self.per_batch = per_batch
        self.stopped_epoch = None

    def on_train_batch_end(self, batch, logs=None):
        if self.per_batch and logs and logs.get("loss", math.inf) <= self.value:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        v = (logs or {}).get(self.monitor)
        if v is None:
            raise ValueError(f"LossThreshold: monitored value {self.monitor!r} is not in the logs "
                             f"(available: {sorted(logs or {})})")
        if v <= self.value:
            self.stopped_epoch = epoch
            self.model.stop_training = True


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'auto', 'min' or 'max', got {mode!r}")
        if patience < 0:
            raise ValueError(f"EarlyStopping: patience must be >= 0, got {patience}")
        self.monitor = monitor
        self.min_delta = abs(min_delta)
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        if mode == "auto":
            mode = "max" if ("acc" in monitor or "auc" in monitor) else "min"
        self.mode = mode
        self.stopped_epoch = 0

    def _better(self, a, b):
        if b is None:
            return True
        return a < b - self.min_delta if self.mode == "min" else a > b + self.min_delta

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = self.baseline
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None:
            raise ValueError(f"EarlyStopping: monitored value {self.monitor!r} is not in the logs "
                             f"(available: {sorted(logs or {})}); pass validation data to monitor val_ values")
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self._better(current, self.best):
            self.best = current
            self.best_epoch = epoch
            self.wait = 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None and self.stopped_epoch:
            self.model.set_weights(self.best_weights)


class TerminateOnNaN(Callback):
    """Stop when a batch loss is NaN or Inf (fit raises NumericalError before this anyway)."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            self.model.stop_training = True


class LambdaCallback(Callback):
    """A callback from functions: LambdaCallback(on_epoch_end=lambda epoch, logs: ...)."""

    def __init__(self, **hooks):
        super().__init__()
        for name, fn in hooks.items():
            if not name.startswith("on_"):
                raise ValueError(f"LambdaCallback: unknown hook {name!r}")
            setattr(self, name, fn)


class ModelCheckpoint(Callback):
    """Save the model (or only its weights) after each epoch; with save_best_only, only when the
    monitored value improves. ``filepath`` may contain ``{epoch}`` and log keys, e.g.
    ``"ckpt-{epoch:02d}-{val_loss:.3f}.cnnbp"``. In distributed training only rank 0 saves."""

    _root_only = True

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto"):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"ModelCheckpoint: mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.filepath = str(filepath)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.mode = ("max" if ("acc" in monitor or "auc" in monitor) else "min") if mode == "auto" else mode
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                raise ValueError(f"ModelCheckpoint: monitored value {self.monitor!r} is not in the logs "
                                 f"(available: {sorted(logs)})")
            better = self.best is None or (current < self.best if self.mode == "min" else current > self.best)
            if not better:
                return
            self.best = current
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved model to {path}")


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved for ``patience``
    epochs (then wait ``cooldown`` epochs), never below ``min_lr``."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        super().__init__()
        if not 0.0 < factor < 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be in (0, 1), got {factor}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.monitor, self.factor, self.patience, self.verbose = monitor, factor, patience, verbose
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode
        self.min_delta, self.cooldown, self.min_lr = abs(min_delta), cooldown, min_lr

    def on_train_begin(self, logs=None):
        self.best, self.wait, self.cooldown_counter = None, 0, 0

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        current = logs.get(self.monitor)
        if current is None:
            raise ValueError(f"ReduceLROnPlateau: monitored value {self.monitor!r} is not in the logs "
                             f"(available: {sorted(logs)})")
        opt = self.model.optimizer
        logs["learning_rate"] = opt.learning_rate
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        improved = self.best is None or (current < self.best - self.min_delta if self.mode == "min"
                                         else current > self.best + self.min_delta)
        if improved:
            self.best, self.wait = current, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                new_lr = max(opt.learning_rate * self.factor, self.min_lr)
                if new_lr < opt.learning_rate:
                    opt.learning_rate = new_lr
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr:.4g}")
                self.cooldown_counter, self.wait = self.cooldown, 0


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of each epoch to ``schedule(epoch, lr)``."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError("LearningRateScheduler: schedule must be callable(epoch, lr) -> lr")
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        opt = self.model.optimizer
        lr = self.schedule(epoch, opt.learning_rate)
        if not isinstance(lr, (int, float, np.floating)) or not np.isfinite(lr) or lr < 0:
            raise ValueError(f"LearningRateScheduler: schedule returned {lr!r}; expected a finite number >= 0")
        opt.learning_rate = float(lr)
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr:.4g}")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self.model.optimizer.learning_rate


class CSVLogger(Callback):
    """Append one row of epoch logs per epoch to a CSV file (header written once). In distributed
    training only rank 0 writes."""

    _root_only = True

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename, self.sep, self.append = str(filename), separator, append
        self.keys = None

    def on_train_begin(self, logs=None):
        import os
        self.keys = None
        if not self.append or not os.path.exists(self.filename):
            open(self.filename, "w").close()
        else:
            with open(self.filename) as f:
                first = f.readline().strip()
            self.keys = first.split(self.sep)[1:] if first else None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        new_file = self.keys is None
        if new_file:
            self.keys = sorted(logs)
        with open(self.filename, "a") as f:
            if new_file:
                f.write(self.sep.join(["epoch"] + self.keys) + "\n")
            f.write(self.sep.join([str(epoch)] + [repr(float(logs.get(k, float("nan")))) for k in self.keys]) + "\n")


class TrainingWarning(UserWarning):
    """A GradientMonitor finding: a layer whose statistics say training is going wrong."""


def _node_outputs(model, names):
    """Per C++ node name: (layer name, tensor label, activation of that tensor). A Dense or Conv2D
    with a sigmoid/tanh/softmax activation is two nodes ("name" and "name/sigmoid"): the first
    holds the pre-activation; ReLU and LeakyReLU run inside the node (and a ReLU layer fused into
    the layer before it counts as that layer's activation; a BatchNormalization run inside the Add
    after it reports the Add's output)."""
    fused = getattr(model, "_fused", {}) or {}
    acts = {}
    for layer in model.layers:
        kind = type(layer).__name__
        act = {"ReLU": "relu", "LeakyReLU": "leaky_relu", "Softmax": "softmax"}.get(kind,
                                                                                   layer.get_config().get("activation"))
        acts[layer.name] = "relu" if layer.name in fused else act
    # A BatchNormalization run inside the Add after it: its node's output is the Add's (and ReLU's).
    for add, bn in (getattr(model, "_residual", {}) or {}).items():
        acts[bn] = acts.get(add)
    split = {n.split("/", 1)[0] for n in names if "/" in n}
    out = {}
    for n in names:
        if "/" in n:
            base, act = n.split("/", 1)
            out[n] = (base, "output", act)
        elif n in split:
            out[n] = (n, "pre_activation", None)
        else:
            out[n] = (n, "output", acts.get(n))
    return out


class GradientMonitor(Callback):
    """What backpropagation is doing, layer by layer, from inside the C++ step.

    Training is cut into intervals of ``every`` steps and each interval gives one record. Of its
    steps, ``samples`` (default ``min(every, 10)``, spread evenly over the interval, the first
    always) are read inside the C++ step; the others cost a counter. A read step adds, for each
    weight tensor, its norm, its gradient's norm and the update/weight ratio ``||dw|| / ||w||``
    (taken at the update: one copy of the parameters and one read of weights and gradients), and
    for each layer's output a slice of ``ceil(batch / samples)`` samples read right after the
    output is written (the slice moves through the batch from read to read, so an interval reads
    about one batch in all, spread over it): mean, standard deviation, fraction of zeros (dead ReLU
    units) and fraction saturated (sigmoid within 0.01 of 0 or 1, tanh beyond 0.99 in magnitude);
    for BatchNormalization the batch statistics (mean |mean| and mean variance over channels). A
    record gives the means over the read steps (``grad_norm``, ``update_ratio``, ``weight_norm``),
    their largest values (``grad_norm_max``, ``update_ratio_max``), and the mean batch loss over
    all of the interval's steps (``loss``); ``steps`` says how many steps it holds (the last
    interval of a run may be shorter) and ``sampled`` how many of them were read. ``samples=every``
    reads every step.

    Rows go to ``frame()`` (a pandas DataFrame when pandas is installed, else a dict of numpy
    arrays) and, with ``log_dir``, to ``log_dir/gradients.csv``. Plain-language warnings
    (``TrainingWarning`` through the warnings module when ``warn``, and to ``print_fn`` when given;
    each once per layer; all of them in ``messages``) name the layer and what to try:

    - vanishing gradients: a kernel's mean gradient norm below ``1e-4`` of the last layer's for
      ``window`` intervals in a row;
    - exploding gradients: a kernel's gradient norm at some read step 100x its first interval's
      mean, or an update/weight ratio above ``0.1`` at some read step;
    - dead ReLU layer: more than 90 % of its outputs exactly zero for ``window`` intervals;
    - saturation: more than 90 % of a sigmoid/tanh layer's outputs saturated for ``window`` intervals;
    - learning rate: the median over the kernels of their largest update/weight ratio in an
      interval above ``0.1`` (too high), or of their mean ratio below ``1e-6`` for ``window``
      intervals (too low); healthy training sits near ``1e-3``.
    """

    VANISHING = 1e-4
    EXPLODING = 100.0
    RATIO_HIGH = 1e-1
    RATIO_LOW = 1e-6
    DEAD = 0.9
    SATURATED = 0.9

    def __init__(self, every=100, log_dir=None, window=3, warn=True, print_fn=None, samples=None):
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"GradientMonitor: every must be a positive int, got {every!r}")
        if samples is None:
            samples = min(every, 10)
        if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= every:
            raise ValueError(f"GradientMonitor: samples must be an int in [1, every={every}], got {samples!r}")
        self.samples = samples
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"GradientMonitor: window must be a positive int, got {window!r}")
        self.every, self.log_dir, self.window, self.warn = every, log_dir, window, bool(warn)
        self.print_fn = print_fn
        self.rows = []
        self.messages = []  # the warnings raised, in order
        self._said = set()
        self._streak = {}
        self._first_grad = {}
        self._open = False
        self._left = 0
        self._epoch = 0
        self._loss = [0.0, 0]

    # -- hooks ----------------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        net = self.model.network
        net.monitoring = True
        info = net.layer_info()
        self._names = [d["name"] for d in info]
        self._kinds = [d["kind"] for d in info]
        self._nodes = _node_outputs(self.model, self._names)
        by_name = {l.name: type(l).__name__ for l in self.model.layers}
        self._layer_kinds = {n: by_name.get(self._nodes[n][0], k) for n, k in zip(self._names, self._kinds)}
        self._open = False

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def _start(self):
        net = self.model.network
        net.monitor_next(self.every, self.samples)
        self._left = self.every - net.iterations % self.every  # intervals end at multiples of every
        self._loss = [0.0, 0]
        self._open = True

    def on_train_batch_begin(self, batch, logs=None):
        if not self._open:
            self._start()

    def on_train_batch_end(self, batch, logs=None):
        # (every step passes here: kept to a few Python operations)
        if logs is not None:
            loss = logs.get("batch_loss")
            if loss is not None:
                self._loss[0] += loss
                self._loss[1] += 1
        self._left -= 1
        if self._left <= 0 and self._open:
            self._flush()
            self._start()

    def on_train_end(self, logs=None):
        if self._open:
            self._flush()  # the last, shorter interval
            self._open = False
        self.model.network.monitoring = False
        if self.log_dir is not None:
            self.to_csv(__import__("os").path.join(self.log_dir, "gradients.csv"))

    def _flush(self):
        s = self.model.network.monitor_stats()
        if s["sampled"] > 0:
            self._record(s, self._loss[0] / self._loss[1] if self._loss[1] else None)

    # -- recording ------------------------------------------------------------------------------
    _COLUMNS = ("step", "steps", "sampled", "epoch", "layer", "kind", "tensor", "mean", "std", "zero_fraction",
                "saturated_fraction", "batch_mean", "batch_var", "weight_norm", "grad_norm", "grad_norm_max",
                "update_ratio", "update_ratio_max", "loss")

    def _row(self, **kw):
        row = dict.fromkeys(self._COLUMNS, float("nan"))
        row.update(kw)
        self.rows.append(row)
        return row

    def _record(self, s, loss):
        step, reads = int(s["step"]), int(s["sampled"])  # (the means are over the read steps)
        base = dict(step=step, steps=int(s["steps"]), sampled=reads, epoch=self._epoch + 1, loss=float("nan") if loss is None else float(loss))
        out, par = s["output"], s["param"]
        for i, node in enumerate(self._names):
            n = out[i, 0]
            if n == 0:
                continue  # no pass of its own (a view, or a softmax fused into the loss)
            name, label, act = self._nodes[node]
            mean = out[i, 1] / n
            std = float(np.sqrt(max(out[i, 2] / n - mean * mean, 0.0)))
            sat = ((out[i, 4] + out[i, 5]) if act == "sigmoid" else out[i, 5] if act == "tanh" else float("nan")) / n
            zeros = out[i, 3] / n
            bn = self._kinds[i] == "BatchNormalization"
            self._row(**base, layer=name, kind=self._layer_kinds[node], tensor=label, mean=mean, std=std,
                      zero_fraction=zeros, saturated_fraction=sat,
                      batch_mean=out[i, 6] / reads if bn else float("nan"),
                      batch_var=out[i, 7] / reads if bn else float("nan"))
            if act == "relu":
                self._check_streak(("dead", name), zeros > self.DEAD,
                                   f"layer '{name}': {zeros:.0%} of its ReLU outputs are zero (dead units) at step {step}. "
                                   "Try a lower learning rate, He initialisation (kernel_initializer='he_normal'), "
                                   "BatchNormalization before the ReLU, or LeakyReLU.")
            if act in ("sigmoid", "tanh"):
                self._check_streak(("saturated", name), sat > self.SATURATED,
                                   f"layer '{name}': {sat:.0%} of its {act} outputs are saturated at step {step}, where "
                                   "the gradient is almost zero. Try BatchNormalization before it, smaller initial "
                                   "weights (glorot_uniform), a lower learning rate, or ReLU.")
        kernels = []
        nan = float("nan")
        for q, (node, pname) in enumerate(s["param_names"]):
            w_sum, g_sum, g_max, r_sum, r_max, r_n = (float(v) for v in par[q])
            g, ratio, ratio_max = g_sum / reads, (r_sum / r_n if r_n else nan), (r_max if r_n else nan)
            name = self._names[node]
            self._row(**base, layer=name, kind=self._layer_kinds[name], tensor=pname, weight_norm=w_sum / reads,
                      grad_norm=g, grad_norm_max=g_max, update_ratio=ratio, update_ratio_max=ratio_max)
            if pname == "kernel":
                kernels.append((name, g, g_max, ratio, ratio_max))
        self._check_gradients(kernels, step)

    def _check_gradients(self, kernels, step):
        if not kernels:
            return
        last = kernels[-1][1]
        for name, g, g_max, ratio, ratio_max in kernels:
            first = self._first_grad.setdefault(name, g)
            if name != kernels[-1][0]:
                self._check_streak(("vanishing", name), last > 0 and g < self.VANISHING * last,
                                   f"layer '{name}': its gradient norm ({g:.2e}) is below 1e-4 of the last layer's "
                                   f"({last:.2e}) at step {step}: the gradient vanishes before it reaches this layer. "
                                   "Try ReLU instead of sigmoid/tanh, He initialisation, BatchNormalization, or "
                                   "residual connections.")
            if (first > 0 and g_max > self.EXPLODING * first) or ratio_max > self.RATIO_HIGH:
                why = (f"its gradient norm grew from {first:.2e} to {g_max:.2e}"
                       if first > 0 and g_max > self.EXPLODING * first
                       else f"one step changed its weights by {ratio_max:.0%} of their norm")
                self._say(("exploding", name), f"layer '{name}': exploding gradients by step {step}: {why}. Try a "
                          "lower learning rate, gradient clipping, or BatchNormalization.")
        peak = np.array([r for _, _, _, _, r in kernels if np.isfinite(r)])
        if peak.size and float(np.median(peak)) > self.RATIO_HIGH:
            self._say(("lr", "high"), f"the learning rate looks too high: by step {step} the median over the layers "
                      f"of the largest update/weight ratio is {float(np.median(peak)):.1e} (healthy training is "
                      "near 1e-3). Lower it 10x.")
        ratios = np.array([r for _, _, _, r, _ in kernels if np.isfinite(r)])
        if ratios.size:
            med = float(np.median(ratios))
            self._check_streak(("lr", "low"), med < self.RATIO_LOW,
                               f"the learning rate looks too low: by step {step} the median update/weight ratio of "
                               f"the layers is {med:.1e} (healthy training is near 1e-3). Raise it 10x.")

    def _check_streak(self, key, bad, message):
        self._streak[key] = self._streak.get(key, 0) + 1 if bad else 0
        if self._streak[key] >= self.window:
            self._say(key, message)

    def _say(self, key, message):
        if key in self._said:
            return
        self._said.add(key)
        self.messages.append(message)
        if self.print_fn is not None:
            self.print_fn(message)
        if self.warn:
            import warnings
            warnings.warn(message, TrainingWarning, stacklevel=2)

    # -- results --------------------------------------------------------------------------------
    def frame(self):
        """The recorded rows: a pandas DataFrame when pandas is installed, else {column: array}."""
        cols = {c: np.array([r[c] for r in self.rows]) for c in self._COLUMNS}
        try:
            import pandas as pd
        except ImportError:
            return cols
        return pd.DataFrame(cols)

    def to_csv(self, path):
        """Write the rows as CSV (one row per step, layer and tensor)."""
        import csv
        import os
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(self._COLUMNS)
            for r in self.rows:
                w.writerow(["" if isinstance(v, float) and v != v else v for v in (r[c] for c in self._COLUMNS)])
