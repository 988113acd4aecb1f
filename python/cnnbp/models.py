"""Models: ``Sequential`` and the functional ``Model(inputs, outputs)`` over any directed acyclic
graph of layers with one input and one output (branches, residual connections, merges).

The model builds one C++ network (``cnnbp._core.Network32``; ``Network64`` with
``dtype='float64'``, for gradient checks). ``fit`` slices batches with numpy and makes one C++ call
per batch: forward, loss, backward and the optimizer step, with the GIL released."""

import math
import numbers
import warnings
import weakref

import numpy as np

from . import _core
from . import _data
from . import callbacks as callbacks_mod
from . import losses as losses_mod
from . import metrics as metrics_mod
from . import mixed_precision
from . import optimizers as optimizers_mod
from ._progress import Progress, _fmt_logs
from ._seeding import next_seed
from .layers import Add, BatchNormalization, InputLayer, KerasTensor, Layer

__all__ = ["Model", "Sequential"]

NumericalError = _core.NumericalError
# Fuse a ReLU layer into the layer before it where that is exact (see Model._fusions); tests turn
# it off to compare the fused and the unfused network.
_FUSE_ACTIVATIONS = True



def _as_numeric(name, a):
    if isinstance(a, (list, tuple)) and len(a) == 1 and isinstance(a[0], np.ndarray):
        a = a[0]
    try:
        arr = np.asarray(a)
    except Exception as e:  # ragged lists and the like
        raise TypeError(f"{name}: expected a numeric array, could not convert: {e}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TypeError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name}: complex values are not supported")
    return arr


def _verbosity(what, verbose):
    """Keras's verbose argument: 'auto' (1), 0, 1 or 2."""
    if verbose == "auto":
        return 1
    if isinstance(verbose, bool) or not isinstance(verbose, numbers.Integral) or verbose not in (0, 1, 2):
        raise ValueError(f"{what}: verbose must be 'auto', 0, 1 or 2, got {verbose!r}")
    return int(verbose)


def _batch_size(value, default=32):
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"batch_size: expected an int, got {value!r}")
    if value <= 0:
        raise ValueError(f"batch_size: expected a positive int, got {value}")
    return int(value)


_absorbed_models = weakref.WeakSet()   # models used as a layer (found again by get_layer)


class Model:
    """A network of layers, Keras style: a chain (Sequential) or a graph (functional API)."""

    def __init__(self, inputs=None, outputs=None, name=None, dtype=None, **kwargs):
        if kwargs:
            raise TypeError(f"Model: unexpected keyword argument(s) {sorted(kwargs)}")
        self.name = name or ("sequential" if isinstance(self, Sequential) else "functional")
        if dtype is None:
            policy = mixed_precision.global_policy()
        elif dtype in (np.float32, np.float64):
            policy = mixed_precision.Policy(np.dtype(dtype).name)
        else:
            try:
                policy = mixed_precision.Policy(dtype)
            except (ValueError, TypeError):
                raise ValueError(f"{self.name}: dtype must be 'float32', 'float64' or 'mixed_bfloat16' "
                                 f"(a cnnbp.mixed_precision policy), got {dtype!r}") from None
        self.dtype_policy = policy
        self.dtype = np.dtype(policy.variable_dtype)
        self._net = None
        self._layers = []
        self._inbound = {}             # layer name -> names of the layers (or the input) it reads
        self._input_name = "input"
        self._input_shape = None       # per-sample shape as the user gives data
        self._channels_first = False
        self._loss = None
        self._optimizer = None
        self._metrics = []
        self._fused = {}               # layer name -> the ReLU layer fused into it (see _fusions)
        self._residual = {}            # Add layer name -> the BatchNormalization run in its node (_residual_fusions)
        # Drawn now, not when the network is built (lazily, for a Sequential without an input
        # shape): the weights depend on set_seed() before construction, not on later calls.
        self._seed = next_seed()
        self._shuffle_seed = next_seed()
        self.stop_training = False
        self.history = None
        if isinstance(self, Sequential):
            return
        if inputs is None or outputs is None:
            raise ValueError("Model: pass inputs and outputs, e.g. Model(Input((28, 28, 1)), y)")
        self._init_functional(inputs, outputs)

    # -- construction -------------------------------------------------------------------------
    def _init_functional(self, inputs, outputs):
        inputs = self._single("inputs", inputs)
        outputs = self._single("outputs", outputs)
        if not isinstance(inputs._layer, InputLayer):
            raise ValueError(f"{self.name}: inputs must come from cnnbp.layers.Input(...)")
        # Every tensor the output is computed from, back to the input.
        seen, tensors, stack, reached = set(), [], [outputs], False
        while stack:
            t = stack.pop()
            if id(t) in seen:
                continue
            seen.add(id(t))
            if t is inputs:
                reached = True
                continue
            if isinstance(t._layer, InputLayer):
                raise ValueError(f"{self.name}: outputs are not computed from the given inputs: they depend on "
                                 f"input {t._layer.name!r}, which is not the model's input {inputs._layer.name!r} "
                                 "(a model has one input)")
            if not t._parents:
                raise ValueError(f"{self.name}: outputs are not computed from the given inputs "
                                 f"(the graph ends at {t.name!r})")
            tensors.append(t)
            stack.extend(t._parents)
        if not reached:
            raise ValueError(f"{self.name}: outputs are not computed from the given inputs")
        tensors.sort(key=lambda t: t._order)  # creation order is a topological order
        owner, names = {}, {inputs._layer.name}
        for t in tensors:
            layer = t._layer
            if id(layer) in owner:
                raise ValueError(f"{layer.name}: the layer is called on two different inputs in this model; shared "
                                 "layers (weight sharing) are not supported, use a second layer object")
            if layer.name in names:
                raise ValueError(f"{self.name}: two layers are named {layer.name!r}; layer names must be unique")
            owner[id(layer)] = t
            names.add(layer.name)
        self._layers = [t._layer for t in tensors]
        self._inbound = {t._layer.name: [p._layer.name for p in t._parents] for t in tensors}
        self._nested_models = [m for m in _absorbed_models if any(l in self._layers for l in m._layers)]
        self._input_name = inputs._layer.name
        self._input_shape = inputs._layer.shape
        self._build()

    @staticmethod
    def _single(what, t):
        if isinstance(t, (list, tuple)):
            if len(t) != 1:
                raise ValueError(f"Model: only one {what[:-1]} tensor is supported, got {len(t)}")
            t = t[0]
        if not isinstance(t, KerasTensor):
            raise TypeError(f"Model: {what} must be symbolic tensors from Input(...) and layer calls, "
                            f"got {type(t).__name__}")
        return t

    def _build(self):
        formats = {l.data_format for l in self._layers if isinstance(l, Layer)}
        formats.discard(None)
        if len(formats) > 1:
            raise ValueError(f"{self.name}: layers mix channels_first and channels_last; use one data_format")
        self._channels_first = formats == {"channels_first"}
        shape = tuple(self._input_shape)
        if self._channels_first:
            if len(shape) != 3:
                raise ValueError(f"{self.name}: channels_first input must be (channels, height, width), got {shape}")
            shape = (shape[1], shape[2], shape[0])
        seen = set()
        for layer in self._layers:
            if not isinstance(layer, Layer):
                raise TypeError(f"{self.name}: expected cnnbp layers, got {type(layer).__name__}")
            if id(layer) in seen or layer._net is not None:
                raise ValueError(f"{layer.name}: a layer can belong to one model once (weight sharing is not supported)")
            seen.add(id(layer))
        if isinstance(self, Sequential):
            names = [l.name for l in self._layers] + [self._input_name]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{self.name}: two layers are named {dup[0]!r}; layer names must be unique")
            self._inbound = self._chain()[1]
        cls = _core.Network64 if self.dtype == np.float64 else _core.Network32
        net = cls(list(shape))
        if self.dtype_policy.name == "mixed_bfloat16":
            net.precision = "mixed_bfloat16"
        ids = {self._input_name: -1}
        fused = self._fused = self._fusions()
        residual = self._residual = self._residual_fusions()
        in_add = set(residual.values())
        index = {l.name: i for i, l in enumerate(self._layers)}
        by_name = {l.name: l for l in self._layers}
        bounds, count = {}, 0
        # keys: each node's place had every layer but the fused ReLUs a node of its own where it
        # stands (the flat buffers' layout and the initial draws do not depend on the pairing).
        keys, place, bn_place = [], 0, {}
        for i, layer in enumerate(self._layers):
            if layer.name in fused.values():
                ids[layer.name] = ids[self._inbound[layer.name][0]]
                continue  # no node of its own: the ReLU runs inside the layer before it
            if layer.name in in_add:
                bn_place[layer.name] = place
                place += 1
                continue  # its node is made at the Add's place, below
            ins = [ids.get(n) for n in self._inbound[layer.name]]
            if isinstance(layer, BatchNormalization):
                layer._check_axis(len(net.tensor_shape(ins[0])), self._channels_first)
            node_layer, node_ins, si = layer, ins, i
            if layer.name in residual:  # the BatchNormalization -> Add pair: one node, the residual second
                node_layer = by_name[residual[layer.name]]
                node_ins = [ids[self._inbound[node_layer.name][0]]] + [
                    ids[n] for n in self._inbound[layer.name] if n != node_layer.name]
                node_layer._check_axis(len(net.tensor_shape(node_ins[0])), self._channels_first)
                si = index[node_layer.name]  # (its initializers' seed, as when it has a node of its own)
            node_layer._fused_act = "relu" if layer.name in fused else None
            out = node_layer._add_to(net, node_ins, seed=(self._seed + 7919 * (si + 1)) & 0xFFFFFFFFFFFFFFFF)
            ids[layer.name] = out
            bounds[node_layer.name] = (count, out + 1)
            if node_layer is layer:
                keys += range(place, place + out + 1 - count)
                place += out + 1 - count
            else:
                keys.append(bn_place[node_layer.name])
                place += 1  # (the Add's own place)
            count = out + 1
        net.finalize(self._seed, keys)
        for layer in self._layers:
            if layer.name in bounds:
                layer._bind(net, *bounds[layer.name])
            else:
                layer._bind_fused(net, ids[layer.name])
        self._net = net
        for layer in self._layers:   # the weights of a model used as a layer come with it
            w = getattr(layer, "_pending_weights", None)
            if w is not None:
                layer.set_weights(w)
                layer._pending_weights = None
        if self._optimizer is not None:
            self._attach_training()

    def _readers(self):
        """{tensor name: names of the layers that read it}."""
        readers = {}
        for name, ins in self._inbound.items():
            for n in ins:
                readers.setdefault(n, []).append(name)
        return readers

    def _fusions(self):
        """{layer name: name of the ReLU layer fused into it}: a ReLU whose only input is a layer
        that can apply it itself (BatchNormalization, Add/Subtract/Average/Multiply, or a Conv2D
        or Dense without an activation of its own) and that nothing else reads. The pair then
        runs as one node: one pass and one tensor fewer, forward and backward."""
        if not _FUSE_ACTIVATIONS:
            return {}
        readers = self._readers()
        by_name = {l.name: l for l in self._layers}
        out = {}
        for layer in self._layers:
            ins = self._inbound[layer.name]
            if not (layer._is_plain_relu() and len(ins) == 1 and ins[0] in by_name):
                continue
            src = by_name[ins[0]]
            if readers.get(src.name) == [layer.name] and src._can_fuse_relu():
                out[src.name] = layer.name
        return out

    def _residual_fusions(self):
        """{Add layer name: name of the BatchNormalization run in its node}: an Add of two tensors
        one of which is a BatchNormalization's output that nothing else reads (a ResNet block's
        second normalisation). The pair runs as one node at the Add's place: the normalised tensor
        is never stored, one pass and one tensor fewer, forward and backward; the Add's fused ReLU
        (if any) comes along. Computes what the two layers do apart, bit for bit."""
        if not _FUSE_ACTIVATIONS:
            return {}
        readers = self._readers()
        by_name = {l.name: l for l in self._layers}
        out = {}
        for layer in self._layers:
            ins = self._inbound[layer.name]
            if type(layer) is not Add or len(ins) != 2 or ins[0] == ins[1]:
                continue
            for n, other in (ins, ins[::-1]):
                src = by_name.get(n)
                # (not when the residual is the normalisation's own input: one gradient for both)
                if (type(src) is BatchNormalization and readers.get(n) == [layer.name]
                        and self._inbound[n] != [other]):
                    out[layer.name] = n
                    break
        return out

    def _ensure_built(self, x=None):
        if self._net is not None:
            return
        if getattr(self, "_absorbed", False):
            raise ValueError(f"{self.name}: this model is a layer of another model now (its layers and weights "
                             "live there): train, evaluate and save that model; trainable and the layers' "
                             "weights still work here")
        if self._input_shape is None:
            if x is None:
                raise ValueError(f"{self.name}: the model has no input shape yet; start it with "
                                 "cnnbp.layers.Input(shape) or pass input_shape= to the first layer, or call fit first")
            self._input_shape = tuple(int(d) for d in np.shape(x)[1:])
        self._build()

    @property
    def layers(self):
        return list(self._layers)

    @property
    def inputs(self):
        """[the input tensor] (a model has one input)."""
        self._ensure_built()
        if getattr(self, "_input_tensor", None) is None:
            self._input_tensor = KerasTensor((None,) + tuple(self._input_shape), name=self._input_name)
        return [self._input_tensor]

    @property
    def outputs(self):
        """[the output tensor]."""
        self._ensure_built()
        if getattr(self, "_output_tensor", None) is None:
            self._output_tensor = KerasTensor(self.output_shape, layer=self._layers[-1] if self._layers else None,
                                              name=self._layers[-1].name if self._layers else self._input_name)
        return [self._output_tensor]

    @property
    def input(self):
        return self.inputs[0]

    @property
    def output(self):
        return self.outputs[0]

    def get_config(self):
        """The architecture as a dict (cnnbp.io.model_to_json's content); from_config rebuilds it."""
        from .io import _model_config
        return _model_config(self)

    @classmethod
    def from_config(cls, config):
        """A model with fresh weights from get_config's dict."""
        import json
        from .io import model_from_json
        return model_from_json(json.dumps(config))

    def to_json(self, **kwargs):
        """The architecture as JSON (cnnbp.io.model_to_json); cnnbp.io.model_from_json rebuilds it."""
        from .io import model_to_json
        return model_to_json(self)

    def get_layer(self, name=None, index=None):
        """A layer by name (or by index); a model used as a layer by its name."""
        if index is not None:
            return self._layers[index]
        for l in self._layers:
            if l.name == name:
                return l
        for m in getattr(self, "_nested_models", []):
            if m.name == name:
                return m
        raise ValueError(f"{self.name}: no layer named {name!r}; layers are {[l.name for l in self._layers]}")

    @property
    def input_shape(self):
        return None if self._input_shape is None else (None,) + tuple(self._input_shape)

    @property
    def output_shape(self):
        self._ensure_built()
        out = tuple(self._net.output_shape)
        return (None,) + out

    # -- compile ------------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_epsilon=1e-7, fuse_loss=True,
                check_numerics=False, **kwargs):
        """Choose the optimizer, loss and metrics. Keras's run_eagerly/jit_compile/steps_per_execution
        are accepted and ignored (the step always runs as one C++ call). By default a NaN or Inf
        loss stops training (NumericalError); check_numerics=True also checks every layer's output
        and gradients each step and names the first layer that produced one (slower: a debug aid)."""
        for k in kwargs:
            if k not in ("run_eagerly", "jit_compile", "steps_per_execution", "auto_scale_loss", "weighted_metrics"):
                raise TypeError(f"compile: unexpected keyword argument {k!r}")
        if loss is None:
            raise ValueError("compile: loss is required, e.g. loss='categorical_crossentropy'")
        self._loss = losses_mod.get(loss)
        self._optimizer = optimizers_mod.get(optimizer)
        if isinstance(metrics, (str, metrics_mod.Metric)):
            metrics = [metrics]
        if metrics is not None and not isinstance(metrics, (list, tuple)):
            raise TypeError(f"compile: metrics must be a list, got {type(metrics).__name__}")
        self._metrics = [metrics_mod.get(m) for m in metrics or []]
        names = [m.name for m in self._metrics]
        dup = sorted({n for n in names if names.count(n) > 1 or n == "loss"})
        if dup:
            raise ValueError(f"compile: metric names must be distinct and not 'loss', got {dup} twice; "
                             "give one a name=")
        self._loss_epsilon = float(loss_epsilon)
        self._fuse = bool(fuse_loss)
        self._check_numerics = bool(check_numerics)
        if self._net is not None:
            self._attach_training()

    def _attach_training(self):
        self._net.set_loss(self._loss.core_kind, self._loss_epsilon, self._fuse, self._loss.delta,
                           self._loss.label_smoothing)
        self._net.check_numerics = self._check_numerics
        self._net.set_metrics([m._spec() for m in self._metrics])
        self._net.set_regularizers([t for l in self._layers for t in l._regularizer_terms()])
        self._optimizer._attach(self._net)

    @property
    def optimizer(self):
        return self._optimizer

    @property
    def loss(self):
        return self._loss

    def _require_compiled(self, what):
        if self._loss is None:
            raise RuntimeError(f"{self.name}: call compile(optimizer=..., loss=...) before {what}")

    # -- data preparation ---------------------------------------------------------------------
    def _prepare_x(self, x, what="x", convert=True):
        """x checked against the model's input; converted to a C-contiguous array of the model's
        dtype, or with convert=False left as it is (a channels_first view transposed), for the
        batches to convert (see cnnbp._data)."""
        x = x if (not convert and isinstance(x, np.ndarray)) else _as_numeric(what, x)
        if not convert:
            _as_numeric(what, x[:0] if x.ndim else x)   # the dtype check, without reading the data
        if x.ndim == 0:
            raise ValueError(f"{what}: expected an array with a batch axis, got a scalar")
        self._ensure_built(x)
        expect = tuple(self._input_shape)
        if x.shape[1:] != expect:
            hint = ""
            if x.ndim == len(expect) and x.shape == expect[: x.ndim]:
                hint = " (a single sample? add a batch axis: x[None])"
            elif x.ndim == len(expect) and x.shape[1:] == expect[:-1] and expect[-1] == 1:
                hint = " (add the channel axis: x[..., None])"
            raise ValueError(f"{self.name}: expected input of shape {(None,) + expect}, got {x.shape}{hint}")
        if x.shape[0] == 0:
            raise ValueError(f"{what}: expected at least one sample, got an empty array of shape {x.shape}")
        if self._channels_first:
            x = x.transpose(0, 2, 3, 1)
        return np.ascontiguousarray(x, dtype=self.dtype) if convert else x

    def _prepare_y(self, y, n, what="y"):
        if y is None:
            raise ValueError(f"{what}: targets are required")
        y = _as_numeric(what, y)
        if y.ndim == 0 or y.shape[0] != n:
            raise ValueError(f"{what}: x has {n} samples but {what} has "
                             f"{'no batch axis' if y.ndim == 0 else y.shape[0]} (shape {y.shape})")
        out_shape = tuple(self._net.output_shape)
        k = int(np.prod(out_shape))
        if self._loss.sparse:
            if not (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)):
                raise ValueError(f"{what}: {self._loss.name} expects integer class labels of shape ({n},), "
                                 f"got {y.shape}")
            y = y.reshape(n)
            if not np.all(np.isfinite(y)) or np.any(y != np.round(y)) or (y.size and (y.min() < 0 or y.max() >= k)):
                bad = y[~((y >= 0) & (y < k) & (y == np.round(y)))][:1]
                raise ValueError(f"{what}: labels must be integers in [0, {k}), found {bad[0] if bad.size else 'NaN'}")
        else:
            if y.shape[1:] != out_shape:
                if y.ndim == 1 and k == 1:
                    y = y.reshape(n, 1)
                else:
                    hint = ""
                    if y.ndim == 1 and k > 1:
                        hint = (f"; integer labels need loss='sparse_categorical_crossentropy', or one-hot "
                                f"encode them with cnnbp.utils.to_categorical(y, {k})")
                    raise ValueError(f"{what}: expected targets of shape {(None,) + out_shape} for "
                                     f"{self._loss.name}, got {y.shape}{hint}")
        return np.ascontiguousarray(y, dtype=self.dtype)

    # -- training -----------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0, seed=None,
            distributed=False, class_weight=None, sample_weight=None, steps_per_epoch=None,
            validation_steps=None, validation_batch_size=None, validation_freq=1, **kwargs):
        """Train for ``epochs`` epochs (or until a callback stops it); returns a History.

        ``x`` may be an array of any numeric dtype (a uint8 image set or a memory-mapped ``.npy``
        stays as it is: each batch is converted when it is gathered), a generator or iterator of
        ``(x, y)`` / ``(x, y, sample_weight)`` batches, or a ``cnnbp.utils.Sequence``; see
        cnnbp._data. ``distributed=True`` trains data-parallel over MPI ranks (see
        ``cnnbp.distributed``; run the script under ``mpiexec -n N``): ``batch_size`` is then per
        rank, every step averages the gradients of the ``N * batch_size`` samples of one global batch."""
        for k in kwargs:
            if k not in ("workers", "use_multiprocessing", "max_queue_size"):
                raise TypeError(f"fit: unexpected keyword argument {k!r}")
        self._require_compiled("fit")
        bs = _batch_size(batch_size)
        vbs = bs if validation_batch_size is None else _batch_size(validation_batch_size)
        if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 0:
            raise ValueError(f"fit: epochs must be a non-negative int, got {epochs!r}")
        if not isinstance(validation_split, numbers.Real) or not 0.0 <= validation_split < 1.0:
            raise ValueError(f"fit: validation_split must be in [0, 1), got {validation_split!r}")
        for arg, v in (("steps_per_epoch", steps_per_epoch), ("validation_steps", validation_steps)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0):
                raise ValueError(f"fit: {arg} must be a positive int or None, got {v!r}")
        if isinstance(validation_freq, bool) or not isinstance(validation_freq, numbers.Integral) \
                or validation_freq <= 0:
            raise ValueError(f"fit: validation_freq must be a positive int, got {validation_freq!r}")
        verbose = 1 if verbose == "auto" else int(verbose)
        if seed is not None:
            self._shuffle_seed = int(seed)
        if _data.is_source(x):
            if y is not None or sample_weight is not None:
                raise ValueError("fit: with a generator or Sequence as x, y and sample_weight come from its batches "
                                 "(y and sample_weight must be None)")
            if validation_split:
                raise ValueError("fit: validation_split needs arrays; give validation_data for a generator or "
                                 "Sequence")
            if distributed:
                raise ValueError("fit: distributed=True needs arrays (each rank reads its slice of every batch)")
            train = _data.SourceBatches(x, steps_per_epoch, lambda raw, i: self._batch("fit", raw, i, class_weight),
                                        "fit")
            train.bs = bs
        else:
            x = self._prepare_x(x, convert=False)
            y = self._prepare_y(y, len(x))
            w = self._sample_weights("fit", y, sample_weight, class_weight)
            if validation_split > 0 and validation_data is None:
                split = int(len(x) * (1.0 - validation_split))
                if split <= 0 or split >= len(x):
                    raise ValueError(f"fit: validation_split={validation_split} leaves an empty training or "
                                     "validation set")
                validation_data = (x[split:], y[split:]) + (() if w is None else (w[split:],))
                x, y, w = x[:split], y[:split], None if w is None else w[:split]
            train = None
        val = None
        if validation_data is not None:
            if _data.is_source(validation_data):
                val = _data.SourceBatches(validation_data, validation_steps,
                                          lambda raw, i: self._batch("validation_data", raw, i), "validation_data")
            else:
                if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                    raise ValueError("fit: validation_data must be a tuple (x_val, y_val) or (x_val, y_val, "
                                     "sample_weight), a generator or a Sequence")
                vx = self._prepare_x(validation_data[0], "validation_data x", convert=False)
                vy = self._prepare_y(validation_data[1], len(vx), "validation_data y")
                vw = self._sample_weights("validation_data", vy,
                                          validation_data[2] if len(validation_data) == 3 else None)
                val = (vx, vy, vw)

        history = callbacks_mod.History()
        cbs = list(callbacks or []) + [history]  # last, as Keras: it records what the others add to the logs
        for cb in cbs:
            if not isinstance(cb, callbacks_mod.Callback):
                raise TypeError(f"fit: callbacks must be cnnbp.callbacks.Callback instances, got {type(cb).__name__}")
        loop = dict(verbose=verbose, cbs=cbs, val=val, vbs=vbs, vsteps=validation_steps, vfreq=int(validation_freq),
                    initial_epoch=initial_epoch, epochs=epochs)
        if train is not None:
            return self._fit_loop(train, dist=None, **loop)
        # Epoch e's order depends only on (shuffle seed, e): fit(epochs=2) then fit(initial_epoch=2,
        # epochs=3) -- even across save and load_model -- sees the orders fit(epochs=3) sees.
        if not distributed:
            train = _data.ArrayBatches(x, y, w, bs, self.dtype, shuffle, self._shuffle_seed)
            train.limit(steps_per_epoch)
            try:
                return self._fit_loop(train, dist=None, **loop)
            finally:
                train.close()
        if isinstance(val, _data.SourceBatches):
            raise ValueError("fit: distributed=True needs validation_data as arrays (each rank evaluates its slice)")
        from . import distributed as dist_mod
        dist = dist_mod._Session(self)
        fit_args = {"batch_size": bs, "epochs": epochs, "initial_epoch": initial_epoch, "shuffle": bool(shuffle),
                    "validation samples": 0 if val is None else len(val[0]),
                    "callbacks": [type(cb).__name__ for cb in cbs]}
        if dist.rank != 0:
            loop["cbs"] = [cb for cb in cbs if not getattr(cb, "_root_only", False)]
        net = self._net
        stream = net.rng_stream
        train = _data.ArrayBatches(x, y, w, bs, self.dtype, shuffle, self._shuffle_seed, dist)
        train.limit(steps_per_epoch)
        try:
            with dist.guard():
                dist_mod._check_consistent(dist.c, dist_mod._fingerprint(self, x, y, fit_args))
                dist_mod._broadcast_state(dist.c, self)
                net.rng_stream = dist.rank
                history = self._fit_loop(train, dist=dist, **loop)
        finally:
            net.rng_stream = stream
            train.close()
        history.allreduce_seconds = dist.allreduce_s
        history.allreduce_steps = dist.steps
        return history

    def _batch(self, what, raw, i, class_weight=None, targets=True):
        """(x, y, w, samples) of batch i of a generator or Sequence, checked and converted."""
        parts = tuple(raw) if isinstance(raw, (tuple, list)) else (raw,)
        if targets and len(parts) not in (2, 3):
            raise ValueError(f"{what}: batch {i} must be (x, y) or (x, y, sample_weight), got "
                             f"{type(raw).__name__}{f' of {len(parts)}' if isinstance(raw, (tuple, list)) else ''}")
        try:
            xb = self._prepare_x(parts[0], "x")
            if not targets:
                return xb, None, None, len(xb)
            yb = self._prepare_y(parts[1], len(xb), "y")
            wb = self._sample_weights("", yb, parts[2] if len(parts) == 3 else None, class_weight)
        except (ValueError, TypeError) as e:
            raise type(e)(f"{what}: batch {i}: {e}") from None
        return xb, yb, wb, len(xb)

    def _sample_weights(self, what, y, sample_weight=None, class_weight=None):
        """The per-sample loss weights (float array of len(y)) from sample_weight and class_weight
        (a dict {class index: weight}; the class of a sample is its label, its one-hot row's
        arg-max, or for one output its target rounded), or None when both are None."""
        n = len(y)
        w = None
        if sample_weight is not None:
            w = _as_numeric(f"{what}: sample_weight", sample_weight).astype(self.dtype)
            if w.shape not in ((n,), (n, 1)):
                raise ValueError(f"{what}: sample_weight must have one weight per sample, shape ({n},), got {w.shape}")
            w = w.reshape(n)
            if not np.all(np.isfinite(w)) or np.any(w < 0):
                raise ValueError(f"{what}: sample_weight must be finite and >= 0")
        if class_weight is not None:
            if not isinstance(class_weight, dict):
                raise TypeError(f"{what}: class_weight must be a dict {{class index: weight}}, got "
                                f"{type(class_weight).__name__}")
            k = int(np.prod(self._net.output_shape))
            if self._loss.sparse:
                cls = y.astype(np.int64)
            elif k == 1:
                cls = (y.reshape(n) > 0.5).astype(np.int64)
            else:
                cls = y.reshape(n, -1).argmax(axis=1)
            table = np.ones(max(k, 2), dtype=np.float64)
            for c, v in class_weight.items():
                if isinstance(c, bool) or not isinstance(c, numbers.Integral) or not 0 <= c < len(table):
                    raise ValueError(f"{what}: class_weight keys must be class indices in [0, {len(table)}), got {c!r}")
                if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
                    raise ValueError(f"{what}: class_weight[{c}] must be a finite number >= 0, got {v!r}")
                table[int(c)] = float(v)
            cw = table[cls].astype(self.dtype)
            w = cw if w is None else w * cw
        return None if w is None else np.ascontiguousarray(w)

    def _fit_loop(self, train, verbose, cbs, val, vbs, vsteps, vfreq, initial_epoch, epochs, dist):
        history = cbs[-1]
        world = dist.size if dist else 1
        params = {"epochs": epochs, "steps": train.steps, "batch_size": getattr(train, "bs", None),
                  "verbose": verbose, "samples": train.samples}
        for cb in cbs:
            cb.set_model(self)
            cb.set_params(params)
        net = self._net
        self.stop_training = False
        self.history = history
        for cb in cbs:
            cb.on_train_begin()
        track = self._tracker()
        for epoch in range(initial_epoch, epochs):
            for cb in cbs:
                cb.on_epoch_begin(epoch)
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs}", flush=True)
            bar = Progress(train.steps, train.samples, verbose)
            loss_sum = 0.0
            seen = 0
            if track:
                track.reset()
            batches = train.epoch(epoch, first=epoch == initial_epoch)
            try:
                for step, (xb, yb, wb, count) in enumerate(batches):
                    for cb in cbs:
                        cb.on_train_batch_begin(step)
                    if dist:
                        loss, c, msums = dist.step(xb, yb, count, wb)
                        if not math.isfinite(loss):
                            from .distributed import _CollectiveError
                            err = NumericalError(f"epoch {epoch + 1}, batch {step + 1}: loss is {loss} (summed over "
                                                 f"{world} ranks) at step {net.iterations + 1}; weights were not "
                                                 "updated")
                            raise _CollectiveError() from err
                        net.apply_update()
                        dist.sync_state()
                    else:
                        try:
                            loss, c = net.train_step(xb, yb, wb)
                        except NumericalError as e:
                            raise NumericalError(f"epoch {epoch + 1}, batch {step + 1}: {e}") from None
                        msums = net.metric_sums() if track else None
                    loss_sum += loss * count
                    seen += count
                    logs = {"loss": loss_sum / seen}
                    if track:
                        track.add(msums, count)
                        logs.update(track.values())
                    bar.update(step + 1, seen, logs)
                    blogs = dict(logs, batch_loss=loss)
                    for cb in cbs:
                        cb.on_train_batch_end(step, blogs)
                    if world > 1:  # a stop asked for on any rank stops all of them
                        self.stop_training = dist.any(self.stop_training)
                    if self.stop_training:
                        break
            finally:
                batches.close()
            if seen == 0:   # a generator that ran out before this epoch
                warnings.warn("fit: the input ran out of data; interrupting training (give a generator that yields "
                              "at least steps_per_epoch * epochs batches)", RuntimeWarning, stacklevel=2)
                break
            epoch_logs = {"loss": loss_sum / seen}
            if track:
                epoch_logs.update(track.values())
            if val is not None and (epoch + 1 - initial_epoch) % vfreq == 0:
                vt = self._tracker()
                if dist:  # each rank evaluates its slice; the sums are reduced
                    n_val = len(val[0])
                    va, vb = dist.local(0, n_val)
                    part = tuple(None if a is None else a[va:vb] for a in val)
                    vloss = self._evaluate_batches(self._array_batches(part, vbs), vt) if vb > va else 0.0
                    tot = dist.sum(np.concatenate([[vloss * (vb - va)], vt.total if vt else []]))
                    vloss = tot[0] / n_val
                    if vt:
                        vt.total[:] = tot[1:]
                        vt.count = n_val
                else:
                    src = val if isinstance(val, _data.SourceBatches) else self._array_batches(val, vbs, vsteps)
                    vloss = self._evaluate_batches(src, vt)
                prefix = getattr(self, "_val_prefix", "val_")   # the command line calls its test set "test"
                epoch_logs[prefix + "loss"] = vloss
                if vt:
                    epoch_logs.update(vt.values(prefix))
            bar.finish(epoch_logs)
            for cb in cbs:
                cb.on_epoch_end(epoch, epoch_logs)
            if world > 1:
                dist.check_weights()
                self.stop_training = dist.any(self.stop_training)
            if getattr(train, "ran_out", False):
                warnings.warn("fit: the input ran out of data; interrupting training (give a generator that yields "
                              "at least steps_per_epoch * epochs batches)", RuntimeWarning, stacklevel=2)
                break
            if self.stop_training:
                break
        for cb in cbs:
            cb.on_train_end()
        return history

    def _tracker(self):
        """The compiled metrics' running sums (None without metrics)."""
        if not self._metrics:
            return None
        return metrics_mod._Tracker(self._metrics, int(np.prod(self._net.output_shape)))

    def _array_batches(self, data, bs, steps=None):
        """In-order batches of (x, y, w) arrays, gathered and converted one batch at a time."""
        x, y, w = data
        b = _data.ArrayBatches(x, y, w, bs, self.dtype, False, 0, prefetch=False)
        b.limit(steps)
        return b

    def _evaluate_batches(self, batches, track=None):
        """Mean loss (weighted by the batches' sample weights) over a batch source; the metrics'
        sums go into track."""
        net = self._net
        total, seen = 0.0, 0
        it = batches.epoch(0)
        try:
            for xb, yb, wb, count in it:
                loss, _ = net.evaluate(xb, yb, wb)
                total += loss * count
                seen += count
                if track:
                    track.add(net.metric_sums(), count)
        finally:
            it.close()
        if seen == 0:
            raise ValueError("evaluate: the input gave no batches")
        return total / seen

    def _result(self, loss, track, return_dict):
        """evaluate / test_on_batch / train_on_batch results, as Keras returns them."""
        logs = {"loss": loss}
        if track:
            logs.update(track.values())
        if return_dict:
            return logs
        return list(logs.values()) if track else loss

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", return_dict=False, sample_weight=None,
                 steps=None, callbacks=None, **kwargs):
        """Mean loss (and the compiled metrics) over x, y in inference mode; x as in fit (arrays,
        a generator or a Sequence: ``steps`` batches of it, or all)."""
        for k in kwargs:
            if k not in ("workers", "use_multiprocessing", "max_queue_size"):
                raise TypeError(f"evaluate: unexpected keyword argument {k!r}")
        if callbacks is not None:
            raise TypeError("evaluate: callbacks are not supported")
        self._require_compiled("evaluate")
        bs = _batch_size(batch_size)
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps <= 0):
            raise ValueError(f"evaluate: steps must be a positive int or None, got {steps!r}")
        if _data.is_source(x):
            if y is not None or sample_weight is not None:
                raise ValueError("evaluate: with a generator or Sequence as x, y and sample_weight come from its "
                                 "batches (y and sample_weight must be None)")
            src = _data.SourceBatches(x, steps, lambda raw, i: self._batch("evaluate", raw, i), "evaluate")
        else:
            x = self._prepare_x(x, convert=False)
            y = self._prepare_y(y, len(x))
            w = self._sample_weights("evaluate", y, sample_weight)
            src = self._array_batches((x, y, w), bs, steps)
        track = self._tracker()
        loss = self._evaluate_batches(src, track)
        verbose = 1 if verbose == "auto" else int(verbose)
        if verbose:
            print(_fmt_logs(self._result(loss, track, True)), flush=True)
        return self._result(loss, track, return_dict)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None, **kwargs):
        """Outputs of the model for x (inference mode), in batches; x as in fit (a generator's
        batches may be x or (x, y, ...): the x part is read). verbose: 'auto' (as 1), 0 (silent),
        1 (progress bar), 2 (one line at the end)."""
        for k in kwargs:
            if k not in ("workers", "use_multiprocessing", "max_queue_size"):
                raise TypeError(f"predict: unexpected keyword argument {k!r}")
        if callbacks is not None:
            raise TypeError("predict: callbacks are not supported")
        verbose = _verbosity("predict", verbose)
        bs = _batch_size(batch_size)
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps <= 0):
            raise ValueError(f"predict: steps must be a positive int or None, got {steps!r}")
        if _data.is_source(x):
            def first(raw, i):
                raw = raw[0] if isinstance(raw, (tuple, list)) and len(raw) in (2, 3) else raw
                return self._batch("predict", raw, i, targets=False)
            src = _data.SourceBatches(x, steps, first, "predict")
            bar = Progress(src.steps, None, verbose) if verbose else None
            outs, seen = [], 0
            it = src.epoch(0)
            try:
                for i, (xb, _, _, count) in enumerate(it):
                    outs.append(self._net.predict(xb))
                    seen += count
                    if bar:
                        bar.update(i + 1, seen, {})
            finally:
                it.close()
            if bar:
                bar.finish({})
            if not outs:
                raise ValueError("predict: the input gave no batches")
            return np.concatenate(outs)
        x = self._prepare_x(x, convert=False)
        n = len(x) if steps is None else min(len(x), steps * bs)
        out = np.empty((n,) + tuple(self._net.output_shape), dtype=self.dtype)
        nsteps = math.ceil(n / bs)
        bar = Progress(nsteps, n, verbose) if verbose else None
        buf = None if x.dtype == self.dtype else np.empty((min(bs, n),) + x.shape[1:], dtype=self.dtype)
        for i, a in enumerate(range(0, n, bs)):
            b = min(a + bs, n)
            out[a:b] = self._net.predict(_data.rows(x, a, b, self.dtype, buf))
            if bar:
                bar.update(i + 1, b, {})
        if bar:
            bar.finish({})
        return out

    def __call__(self, x, training=None, mask=None):
        """On numpy data: predict(x). On a symbolic tensor: this model used as a layer of a new model
        (a pretrained base under a new head): its layers become that model's, with their weights,
        and base.trainable = False freezes them all there."""
        if isinstance(x, (list, tuple)) and len(x) == 1:
            x = x[0]
        if isinstance(x, KerasTensor):
            return self._call_symbolic(x)
        return self.predict(x, verbose=0)

    def _chain(self):
        """(input name, {layer name: names it reads}) of this model's graph."""
        if isinstance(self, Sequential):
            inbound, prev = {}, self._input_name
            for l in self._layers:
                inbound[l.name] = list(self._nested_inbound.get(l.name, [prev]))
                prev = l.name
            return self._input_name, inbound
        return self._input_name, self._inbound

    def _absorb(self):
        """Hand this model's layers (with their current weights, set again once the new model is
        built) to a model that uses it as a layer."""
        if not self._layers:
            raise ValueError(f"{self.name}: an empty model cannot be used as a layer")
        if getattr(self, "_absorbed", False):
            raise ValueError(f"{self.name}: this model is already a layer of another model (weight sharing is "
                             "not supported)")
        if self._net is not None:
            for l in self._layers:
                l._pending_weights = l.get_weights()
            self._unbind()
        self._absorbed = True
        _absorbed_models.add(self)

    def _call_symbolic(self, t):
        if self._input_shape is not None and t.shape is not None and tuple(t.shape[1:]) != tuple(self._input_shape):
            raise ValueError(f"{self.name}: expected an input of shape {(None,) + tuple(self._input_shape)}, got "
                             f"{t.shape}")
        inp, inbound = self._chain()
        self._absorb()
        made = {inp: t}
        for l in self._layers:
            made[l.name] = KerasTensor(None, layer=l, parents=[made[n] for n in inbound[l.name]], name=l.name)
        return made[self._layers[-1].name]

    def _unbind(self):
        for l in self._layers:
            l._net = None
            l._params, l._state = {}, {}
        self._net = None

    def train_on_batch(self, x, y, sample_weight=None, class_weight=None, return_dict=False):
        """One optimizer step on one batch; returns the loss, or [loss, metrics...] when compiled with
        metrics (their values on this batch before the update), or a dict."""
        self._require_compiled("train_on_batch")
        x = self._prepare_x(x)
        y = self._prepare_y(y, len(x))
        w = self._sample_weights("train_on_batch", y, sample_weight, class_weight)
        try:
            loss, _ = self._net.train_step(x, y, w)
        except NumericalError as e:
            raise NumericalError(f"train_on_batch: {e}") from None
        track = self._tracker()
        if track:
            track.add(self._net.metric_sums(), len(x))
        return self._result(loss, track, return_dict)

    def test_on_batch(self, x, y, sample_weight=None, return_dict=False):
        """Loss (and metrics) of one batch in inference mode, without updating."""
        self._require_compiled("test_on_batch")
        x = self._prepare_x(x)
        y = self._prepare_y(y, len(x))
        w = self._sample_weights("test_on_batch", y, sample_weight)
        track = self._tracker()
        return self._result(self._evaluate_batches(self._array_batches((x, y, w), len(x)), track), track,
                            return_dict)

    def predict_on_batch(self, x):
        """Outputs of the model for one batch (inference mode)."""
        x = self._prepare_x(x)
        return self._net.predict(x)

    # -- weights ------------------------------------------------------------------------------
    def get_weights(self):
        """Copies of every weight array, layer by layer (kernel, then bias; BatchNormalization's
        gamma, beta, moving_mean, moving_variance)."""
        self._ensure_built()
        return [w for l in self._layers for w in l.get_weights()]

    def set_weights(self, weights):
        """Write weight arrays in get_weights() order; shapes are checked first."""
        self._ensure_built()
        weights = list(weights)
        need = sum(len(l.weights) for l in self._layers)
        if len(weights) != need:
            raise ValueError(f"{self.name}: expected {need} weight arrays, got {len(weights)}")
        i = 0
        for l in self._layers:
            k = len(l.weights)
            l.set_weights(weights[i:i + k])
            i += k

    @property
    def weights(self):
        self._ensure_built()
        return [w for l in self._layers for w in l.weights]

    @property
    def trainable_weights(self):
        """Views of the weights the optimizer updates."""
        self._ensure_built()
        return [w for l in self._layers for w in l.trainable_weights]

    @property
    def non_trainable_weights(self):
        """Views of the weights it does not: frozen layers' and the moving statistics."""
        self._ensure_built()
        return [w for l in self._layers for w in l.non_trainable_weights]

    @property
    def trainable(self):
        return all(l.trainable for l in self._layers)

    @trainable.setter
    def trainable(self, value):
        for l in self._layers:
            l.trainable = value

    def count_params(self):
        """Number of weights, trainable and not (as Keras)."""
        self._ensure_built()
        return int(self._net.num_params + self._net.num_state)

    def planned_bytes(self, batch_size=32):
        """Bytes one training step with this batch size holds, by kind (parameters, gradients,
        optimizer state, state, activations, gradient buffers, scratch, the layers' own buffers),
        with the total and the largest tensor."""
        self._ensure_built()
        return self._net.plan_bytes(_batch_size(batch_size))

    def summary(self, print_fn=None, batch_sizes=(32, 128)):
        """Print the layers (with what each is connected to, for a graph), their output shapes and
        weight counts, the trainable and non-trainable totals, and the memory a training step is
        planned to hold for each of batch_sizes."""
        self._ensure_built()
        print_fn = print_fn or print
        graph = not isinstance(self, Sequential)
        head = ("Layer (type)", "Output Shape", "Param #") + (("Connected to",) if graph else ())
        rows = [head]
        for l in self._layers:
            r = (f"{l.name} ({type(l).__name__})", str(l.output_shape), f"{l.count_params():,}")
            if graph:
                r += (", ".join(self._inbound[l.name]),)
            rows.append(r)
        w = [max(len(r[i]) for r in rows) + 2 for i in range(len(head))]
        line = "-" * sum(w)
        out = [f'Model: "{self.name}"', line]
        for j, r in enumerate(rows):
            cells = [r[0].ljust(w[0]), r[1].ljust(w[1]), r[2].rjust(w[2] - 2)]
            if graph:
                cells.append("  " + r[3])
            out.append("".join(cells).rstrip())
            if j == 0:
                out.append("=" * sum(w))
        trainable = sum(int(np.prod(v.shape)) for v in self.trainable_weights)
        total = self.count_params()
        out += ["=" * sum(w), f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                f"Non-trainable params: {total - trainable:,}"]
        mem = ", ".join(f"batch {b}: {self.planned_bytes(b)['total'] / 2 ** 20:,.1f} MiB" for b in batch_sizes)
        out += [f"Training step memory (planned): {mem}", line]
        print_fn("\n".join(out))

    # -- saving -------------------------------------------------------------------------------
    def save(self, path, include_optimizer=True):
        """One file with architecture, weights, and (if compiled) loss, optimizer and its state;
        ``cnnbp.load_model(path)`` restores it. Written atomically (temporary file, then rename)."""
        from .io import save_model
        _warn_keras_suffix(path)
        save_model(self, path, include_optimizer=include_optimizer)

    def save_weights(self, path):
        """Write only the weights (see cnnbp.io.save_weights)."""
        from .io import save_weights
        _warn_keras_suffix(path)
        save_weights(self, path)

    def load_weights(self, path):
        """Load weights from save_weights or save (by layer name, else by order)."""
        from .io import load_weights
        load_weights(self, path)

    @property
    def network(self):
        """The C++ network (cnnbp._core.Network32/64): forward, backward, apply_update, views."""
        self._ensure_built()
        return self._net


def _warn_keras_suffix(path):
    """A name ending in .keras or .h5 gets cnnbp's format all the same: say so."""
    import os
    import warnings
    name = os.fspath(path) if not hasattr(path, "write") else ""
    if isinstance(name, str) and name.lower().endswith((".keras", ".h5")):
        warnings.warn(f"{name}: written in cnnbp's own format (not Keras's .keras/.h5); cnnbp.load_model reads it, "
                      "Keras does not. Name it .cnnbp to avoid the confusion.", UserWarning, stacklevel=3)


def load_model(path, compile=True):
    """Keras's cnnbp.models.load_model spelling of cnnbp.load_model."""
    from .io import load_model as _load
    return _load(path, compile=compile)


class Sequential(Model):
    """A plain stack of layers: ``Sequential([Input((28, 28, 1)), Conv2D(...), ...])``."""

    def __init__(self, layers=None, name=None, dtype=None, **kwargs):
        super().__init__(name=name, dtype=dtype, **kwargs)
        self._nested_inbound = {}   # layers of a model added as a layer: what they read
        self._nested_models = []
        for layer in layers or []:
            self._append(layer)
        if self._input_shape is not None and self._layers:
            self._build()   # as Keras: with an input shape the weights exist at once

    def add(self, layer):
        """Append a layer (or start with Input(shape)). Once the input shape is known the model is
        built after every add, as in Keras; the layers already there keep their weights."""
        if isinstance(layer, KerasTensor) and layer._layer is not None and not isinstance(layer._layer, InputLayer):
            raise TypeError(f"{self.name}: add() takes layers or Input(...), got a layer output")
        n, shape, name = len(self._layers), self._input_shape, self._input_name

        def undo():
            for l in self._layers[n:]:
                self._nested_inbound.pop(l.name, None)
            del self._layers[n:]
            self._input_shape, self._input_name = shape, name
            if isinstance(layer, Model) and layer in self._nested_models:
                self._nested_models.remove(layer)
                layer._absorbed = False
                _absorbed_models.discard(layer)

        self._rebuild(lambda: self._append(layer), undo)

    def _append_model(self, base):
        """A model as a layer of this Sequential: its layers follow, reading what the model's input
        was; its weights come along."""
        if base is self:
            raise ValueError(f"{self.name}: a model cannot contain itself")
        if not self._layers and self._input_shape is None:
            self._input_shape = base._input_shape
        elif base._input_shape is not None and self._layers and self._net is not None \
                and tuple(self._net.output_shape) != tuple(base._input_shape):
            raise ValueError(f"{base.name}: expected an input of shape {(None,) + tuple(base._input_shape)}, got "
                             f"{(None,) + tuple(self._net.output_shape)}")
        inp, inbound = base._chain()
        entry = self._layers[-1].name if self._layers else self._input_name
        base._absorb()
        for l in base._layers:
            if any(l is m for m in self._layers):
                raise ValueError(f"{l.name}: a layer can belong to one model once (weight sharing is not supported)")
            self._nested_inbound[l.name] = [entry if n == inp else n for n in inbound[l.name]]
            self._layers.append(l)
        self._nested_models.append(base)

    def pop(self):
        """Remove and return the last layer; a built model is built again without it."""
        if not self._layers:
            raise ValueError(f"{self.name}: there are no layers to pop")
        out = self._layers[-1]
        self._rebuild(lambda: self._layers.pop(), lambda: self._layers.append(out))
        return out

    def _rebuild(self, change, undo):
        """Apply change() to the layer list and, when the input shape is known, build the network
        again with the weights of the layers that stay (a compiled model keeps its loss, optimizer
        and metrics; the optimizer's state starts over). A change that does not build is undone."""
        if self._net is None:
            change()
            if self._input_shape is not None and self._layers:
                try:
                    self._build()
                except Exception:
                    self._unbind()
                    undo()
                    raise
            return
        saved = [(l, l.get_weights()) for l in self._layers]
        self._unbind()
        try:
            change()
            if self._layers:
                self._build()
        except Exception:
            self._unbind()
            undo()
            self._build()
            for l, w in saved:
                l.set_weights(w)
            raise
        for l, w in saved:
            if l in self._layers:
                l.set_weights(w)

    def _append(self, layer):
        if isinstance(layer, Model):
            return self._append_model(layer)
        if isinstance(layer, KerasTensor):
            if not isinstance(layer._layer, InputLayer):
                raise TypeError(f"{self.name}: add() takes layers or Input(...), got a layer output")
            layer = layer._layer
        if isinstance(layer, InputLayer):
            if self._layers or self._input_shape is not None:
                raise ValueError(f"{self.name}: Input must come first")
            self._input_shape = layer.shape
            self._input_name = layer.name
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"{self.name}: expected a cnnbp layer, got {type(layer).__name__}")
        if not self._layers and self._input_shape is None and layer._input_shape_arg is not None:
            self._input_shape = layer._input_shape_arg
        elif layer._input_shape_arg is not None and self._layers:
            raise ValueError(f"{layer.name}: input_shape is only meaningful on the first layer")
        if any(l is layer for l in self._layers) or layer._net is not None:
            raise ValueError(f"{layer.name}: a layer can belong to one model once (weight sharing is not supported)")
        self._layers.append(layer)
