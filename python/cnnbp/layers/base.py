"""The base of every layer: specification until its model is built, then numpy views of the C++
network's buffers (``layer.kernel``, ``layer.bias``; BatchNormalization's moving statistics live
in the network's state buffer). Layers are called on symbolic tensors for the functional style::

    x = Input((28, 28, 1)); y = Conv2D(32, 3, activation="relu")(x); ...; Model(x, y)

and layers that merge branches take a list: ``Add()([a, b])``.
"""

import itertools
import numbers

import numpy as np

from .._naming import snake, unique_name


_ACTIVATIONS = {   # Keras name -> (the C++ kind, its alpha); kinds and formulas in csrc/kernels/activation.h
    None: ("linear", 0.0), "linear": ("linear", 0.0), "relu": ("relu", 0.0),
    "leaky_relu": ("leaky_relu", 0.2), "sigmoid": ("sigmoid", 0.0), "tanh": ("tanh", 0.0),
    "softmax": ("softmax", 0.0), "elu": ("elu", 1.0), "selu": ("selu", 0.0), "gelu": ("gelu", 0.0),
    "swish": ("swish", 0.0), "silu": ("swish", 0.0), "softplus": ("softplus", 0.0),
    "hard_sigmoid": ("hard_sigmoid", 0.0), "relu6": ("relu6", 6.0),
}
# Kinds a layer with weights applies to its own output (their derivative is a function of it).
_FUSABLE = ("linear", "relu", "leaky_relu", "tanh", "relu6")
_INITIALIZERS = ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
                 "lecun_normal", "zeros", "ones")


def _activation(name, act):
    key = act
    if isinstance(act, str):
        key = act.lower()
    if key not in _ACTIVATIONS:
        names = ", ".join(repr(k) for k in _ACTIVATIONS if k is not None)
        raise ValueError(f"{name}: unknown activation {act!r}; expected None or one of {names}")
    return _ACTIVATIONS[key]


def _fusable(act):
    """The activation the C++ layer applies itself. softmax and sigmoid stay layers of their own,
    so that with cross-entropy they fold into the loss (the stable from-logits form); so do the
    kinds whose derivative needs their input (elu, gelu, swish, ...)."""
    return act if act in _FUSABLE else "linear"


def _add_fused(layer, net, kind, inputs, config):
    """A layer with weights and an activation: the kernel node with the activation fused into it,
    then, for softmax or sigmoid, an Activation node of its own (see _fusable). Returns the last node."""
    own = _fusable(layer.activation)
    fused = layer._fused_act or own  # a following ReLU layer fused in (only when the own one is linear)
    out = net.add_layer(kind, layer.name, inputs, dict(config, activation=fused, alpha=layer._alpha))
    if own != layer.activation:
        out = net.add_layer("Activation", f"{layer.name}/{layer.activation}", [out],
                            dict(activation=layer.activation, alpha=layer._alpha))
    return out


# The largest size of one axis (and of one sample's tensor): the C++ core indexes with 32-bit ints.
MAX_DIM = 2**31 - 1


def _at_most(name, arg, value, shown=None):
    if value > MAX_DIM:
        raise ValueError(f"{name}: {arg} must be at most 2**31 - 1 = {MAX_DIM}, got {shown if shown is not None else value}")


def _positive_int(name, arg, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name}: {arg} must be an int, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name}: {arg} must be positive, got {value}")
    _at_most(name, arg, value)
    return int(value)


def _initializer(name, arg, value):
    if value is None:
        value = "zeros"
    if not isinstance(value, str):
        value = getattr(value, "name", None) or snake(type(value).__name__)
    v = value.lower()
    if v not in _INITIALIZERS:
        raise ValueError(f"{name}: unknown {arg} {value!r}; expected one of {', '.join(_INITIALIZERS)}")
    return v


def _pair(name, arg, value, allow_zero=False):
    """int or (int, int) -> (int, int), positive."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (int(value), int(value))
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {arg} must be an int or a pair of ints, got {value!r}") from None
    for v in (a, b):
        if not isinstance(v, numbers.Integral) or isinstance(v, bool):
            raise TypeError(f"{name}: {arg} must contain ints, got {value!r}")
        if v < (0 if allow_zero else 1):
            raise ValueError(f"{name}: {arg} must be {'non-negative' if allow_zero else 'positive'}, got {value!r}")
        _at_most(name, arg, v, value)
    return int(a), int(b)


def _padding(name, padding, allow_explicit=True):
    """'valid' | 'same' | int | (ph, pw) | ((top, bottom), (left, right)) -> (mode, pads)."""
    if isinstance(padding, str):
        p = padding.lower()
        if p not in ("valid", "same"):
            raise ValueError(f"{name}: padding must be 'valid' or 'same'"
                             f"{' or explicit sizes' if allow_explicit else ''}, got {padding!r}")
        return p, (0, 0, 0, 0)
    if not allow_explicit:
        raise ValueError(f"{name}: padding must be 'valid' or 'same', got {padding!r}")
    if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
        if padding < 0:
            raise ValueError(f"{name}: padding must be non-negative, got {padding}")
        _at_most(name, "padding", padding)
        return "explicit", (int(padding),) * 4
    try:
        a, b = padding
        if isinstance(a, numbers.Integral) and isinstance(b, numbers.Integral):
            (a, b) = _pair(name, "padding", (a, b), allow_zero=True)
            return "explicit", (a, a, b, b)
        (t, bo), (le, r) = a, b
        t, bo = _pair(name, "padding", (t, bo), allow_zero=True)
        le, r = _pair(name, "padding", (le, r), allow_zero=True)
        return "explicit", (t, bo, le, r)
    except (TypeError, ValueError) as e:
        if isinstance(e, ValueError) and name in str(e):
            raise
        raise ValueError(f"{name}: padding must be 'valid', 'same', an int, (ph, pw) or "
                         f"((top, bottom), (left, right)), got {padding!r}") from None


def _data_format(name, value):
    """None (the default, channels_last) or an explicit choice; the model checks they agree."""
    if value is None:
        return None
    if value not in ("channels_last", "channels_first"):
        raise ValueError(f"{name}: data_format must be 'channels_last' or 'channels_first', got {value!r}")
    return value



def _shape_tuple(name, shape):
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{name}: shape must be a tuple of ints, got {shape!r}") from None
    if len(shape) == 0:
        raise ValueError(f"{name}: shape must have at least one axis, got ()")
    for d in shape:
        if d is None:
            raise ValueError(f"{name}: every axis of the input shape must be known, got {shape} "
                             "(the batch axis is not part of the shape)")
        if not isinstance(d, numbers.Integral) or isinstance(d, bool):
            raise TypeError(f"{name}: shape must contain ints, got {shape!r}")
        if d <= 0:
            raise ValueError(f"{name}: shape must be positive, got {shape}")
        _at_most(name, "every axis of the shape", d, shape)
    return tuple(int(d) for d in shape)


_call_counter = itertools.count()


class KerasTensor:
    """A symbolic tensor of the functional API: which layer made it from which tensors."""

    def __init__(self, shape, layer=None, parents=(), name=None):
        self.shape = shape
        self._layer = layer
        self._parents = list(parents)
        self._order = next(_call_counter)  # creation order: a topological order of any graph
        self.name = name

    def __repr__(self):
        return f"<KerasTensor shape={self.shape} name={self.name}>"

    _MODEL_METHODS = frozenset(("compile", "fit", "evaluate", "predict", "summary", "save", "save_weights",
                                "load_weights", "get_weights", "set_weights", "train_on_batch", "test_on_batch",
                                "predict_on_batch", "layers", "count_params", "get_layer", "to_json"))

    def __getattr__(self, name):
        if name in KerasTensor._MODEL_METHODS:
            raise AttributeError(
                f"'{self.name}' is a symbolic tensor (the output of a layer call), not a model, so it has no "
                f"{name}(); wrap the graph in a model first: model = cnnbp.Model(inputs, outputs), where inputs "
                "is the Input(...) tensor and outputs this tensor")
        raise AttributeError(f"'KerasTensor' object has no attribute {name!r}")


class Layer:
    """Base layer. Subclasses add their node(s) to the C++ network in ``_add_to``."""

    _min_inputs = 1   # layers that merge branches take a list of at least this many tensors
    _max_inputs = 1
    _regularizable = ()   # weights that take a <weight>_regularizer argument (cnnbp.regularizers)

    def __init__(self, name=None, input_shape=None, dtype=None, trainable=True, **kwargs):
        regs = {p: kwargs.pop(f"{p}_regularizer", None) for p in self._regularizable}
        unsupported = [k for k in ("activity_regularizer", "kernel_constraint", "bias_constraint")
                       if kwargs.pop(k, None) is not None]
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected keyword argument(s) {sorted(kwargs)}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}: name must be a string, got {name!r}")
        self.name = name or unique_name(snake(type(self).__name__))
        if unsupported:
            raise ValueError(f"{self.name}: {', '.join(unsupported)} is not supported")
        from .. import regularizers
        self._regularizers = {p: regularizers.get(r, f"{self.name}: {p}_regularizer") for p, r in regs.items()
                              if r is not None}
        self._input_shape_arg = None if input_shape is None else _shape_tuple(self.name, input_shape)
        self._net = None
        self._core_index = []      # indices of the C++ nodes this layer became
        self._out_node = None      # the node holding the layer's output
        self._fused_act = None     # a following ReLU layer runs inside this one (Model._fusions)
        self._params = {}          # name -> (offset, shape) in the parameter buffer
        self._state = {}           # name -> (offset, shape) in the state buffer
        self.input_shape = None
        self.output_shape = None
        self.data_format = None  # layers with a data_format argument set it
        self._trainable = bool(trainable)

    # functional API
    def __call__(self, inputs):
        multi = self._max_inputs > 1
        if isinstance(inputs, (list, tuple)):
            if not multi:
                raise ValueError(f"{self.name}: {type(self).__name__} takes a single tensor, got a list of "
                                 f"{len(inputs)}; merge branches with Add, Concatenate, ... first")
            tensors = list(inputs)
        else:
            if multi:
                raise ValueError(f"{self.name}: {type(self).__name__} takes a list of at least "
                                 f"{self._min_inputs} tensors, e.g. {type(self).__name__}()([a, b])")
            tensors = [inputs]
        for t in tensors:
            if not isinstance(t, KerasTensor):
                raise TypeError(f"{self.name}: expected a symbolic tensor from Input(...) or another layer, "
                                f"got {type(t).__name__}")
        if multi and not self._min_inputs <= len(tensors) <= self._max_inputs:
            want = (f"exactly {self._min_inputs}" if self._min_inputs == self._max_inputs
                    else f"at least {self._min_inputs}")
            raise ValueError(f"{self.name}: {type(self).__name__} takes {want} tensors, got {len(tensors)}")
        return KerasTensor(None, layer=self, parents=tensors, name=self.name)

    def _core_config(self):
        """The options of the C++ node (see _core.layer_kinds())."""
        return {}

    _core_kind = None

    def _add_to(self, net, inputs, seed=0):
        """Append this layer's node(s) reading nodes `inputs` (-1: the model input); returns the
        index of the node holding the layer's output."""
        return net.add_layer(self._core_kind, self.name, inputs, self._core_config())

    # ReLU fusion (Model._fusions): a layer that applies a following ReLU itself, and the ReLU.
    def _can_fuse_relu(self):
        return False

    def _is_plain_relu(self):
        return False

    def _bind_fused(self, net, node):
        """This layer (a ReLU) runs inside node `node`, the layer before it."""
        self._net = net
        self._core_index = []
        self._out_node = node
        self._params, self._state = {}, {}
        self.input_shape = self.output_shape = (None,) + tuple(net.layer_info()[node]["output_shape"])

    def _bind(self, net, first, last):
        self._net = net
        self._core_index = list(range(first, last))
        self._out_node = last - 1
        info = net.layer_info()
        self._params, self._state = {}, {}
        for i in self._core_index:
            for pname, shape, offset, size in info[i]["params"]:
                self._params[pname] = (offset, tuple(shape))
            for pname, shape, offset, size in info[i]["state"]:
                self._state[pname] = (offset, tuple(shape))
        self.input_shape = (None,) + tuple(info[first]["input_shape"])
        self.output_shape = (None,) + tuple(info[last - 1]["output_shape"])
        if not self._trainable:
            self._apply_trainable()

    # trainable
    @property
    def trainable(self):
        """False freezes the layer: no gradient for its weights, no update (BatchNormalization then
        normalises with its moving statistics, as Keras). Takes effect at once, also after compile."""
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        self._trainable = bool(value)
        if self._net is not None:
            self._apply_trainable()

    def _apply_trainable(self):
        for i in self._core_index:
            self._net.set_trainable(i, self._trainable)

    # weights
    def _weight_views(self):
        """(name, numpy view) of every weight: trainable parameters first, then state."""
        if self._net is None:
            return []
        out = [(p, self._net.param_view(off, list(shape))) for p, (off, shape) in self._params.items()]
        out += [(p, self._net.state_view(off, list(shape))) for p, (off, shape) in self._state.items()]
        return out

    @property
    def weights(self):
        """Numpy views of this layer's weights in the C++ buffers (kernel, bias; for
        BatchNormalization gamma, beta, moving_mean, moving_variance)."""
        return [v for _, v in self._weight_views()]

    @property
    def trainable_weights(self):
        if self._net is None or not self._trainable:
            return []
        return [self._net.param_view(off, list(shape)) for off, shape in self._params.values()]

    @property
    def non_trainable_weights(self):
        if self._net is None:
            return []
        frozen = [] if self._trainable else [self._net.param_view(off, list(s)) for off, s in self._params.values()]
        return frozen + [self._net.state_view(off, list(s)) for off, s in self._state.values()]

    @property
    def kernel(self):
        return self._view("kernel")

    @property
    def bias(self):
        return self._view("bias")

    def _view(self, pname, grad=False):
        if self._net is None:
            raise ValueError(f"{self.name}: the layer is not built yet (its model has no input shape)")
        if pname in self._state and not grad:
            off, shape = self._state[pname]
            return self._net.state_view(off, list(shape))
        if pname not in self._params:
            raise AttributeError(f"{self.name} has no {pname}")
        off, shape = self._params[pname]
        return self._net.param_view(off, list(shape), grad)

    def get_weights(self):
        """Copies of this layer's weights (see weights)."""
        return [np.array(w) for w in self.weights]

    def set_weights(self, weights):
        """Write this layer's weights (shapes and dtypes checked first)."""
        current = self._weight_views()
        if len(weights) != len(current):
            raise ValueError(f"{self.name}: expected {len(current)} weight arrays, got {len(weights)}")
        arrays = []
        for (pname, dst), w in zip(current, weights):
            w = np.asarray(w)
            if w.shape != dst.shape:
                raise ValueError(f"{self.name}: expected {pname} of shape {dst.shape}, got {w.shape}")
            if not np.issubdtype(w.dtype, np.number):
                raise TypeError(f"{self.name}: {pname} must be numeric, got dtype {w.dtype}")
            arrays.append(w)
        for (_, dst), w in zip(current, arrays):
            dst[...] = w

    def count_params(self):
        """Number of weights of this layer (trainable and not)."""
        return int(sum(int(np.prod(s)) for _, s in list(self._params.values()) + list(self._state.values())))

    def _regularizer_terms(self):
        """(node, offset, size, l1, l2) of this layer's regularised weights (see Model)."""
        if not self._regularizers or self._net is None:
            return []
        info = self._net.layer_info()
        node_of = {offset: i for i in self._core_index for _, _, offset, _ in info[i]["params"]}
        out = []
        for p, reg in self._regularizers.items():
            name = p if p in self._params else f"{p}_kernel"   # depthwise -> depthwise_kernel
            if name in self._params:
                off, shape = self._params[name]
                out.append((node_of[off], off, int(np.prod(shape)), reg.l1, reg.l2))
        return out

    def get_config(self):
        """The constructor arguments that rebuild this layer (JSON-compatible)."""
        cfg = {"name": self.name}
        if not self._trainable:
            cfg["trainable"] = False
        from .. import regularizers
        for p, reg in self._regularizers.items():
            cfg[f"{p}_regularizer"] = regularizers.serialize(reg)
        return cfg

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


class InputLayer(Layer):
    """The model input; ``Input(shape)`` returns its symbolic tensor."""

    def __init__(self, shape=None, batch_size=None, name=None, input_shape=None, dtype=None, **kwargs):
        super().__init__(name=name or unique_name("input_layer"), **kwargs)
        shape = shape if shape is not None else input_shape
        if shape is None:
            raise ValueError(f"{self.name}: shape is required, e.g. Input((28, 28, 1))")
        self.shape = _shape_tuple(self.name, shape)
        self._input_shape_arg = self.shape
        self.batch_size = batch_size
        self.output = KerasTensor((None,) + self.shape, layer=self, parents=(), name=self.name)
        self.input_shape = self.output_shape = (None,) + self.shape

    def _add_to(self, net, inputs, seed=0):
        raise TypeError(f"{self.name}: an InputLayer is not a node of the network")


def Input(shape=None, batch_size=None, name=None, dtype=None, **kwargs):
    """A symbolic model input of the given per-sample shape (no batch axis)."""
    return InputLayer(shape=shape, batch_size=batch_size, name=name, dtype=dtype, **kwargs).output


def _add_as_1d(layer, net, inputs, add_2d):
    """A 1-D layer over (steps, channels) as its 2-D form over (1, steps, channels): Reshape nodes
    (views, no copy) around the 2-D node(s) that add_2d(inputs) appends. Returns the last node."""
    shape = tuple(net.tensor_shape(inputs[0]))
    if len(shape) != 2:
        raise ValueError(f"{layer.name}: expected an input of shape (None, steps, channels), got {(None,) + shape}")
    r = net.add_layer("Reshape", f"{layer.name}/as_2d", inputs, dict(target_shape=[1, shape[0], shape[1]]))
    out = add_2d([r])
    o = tuple(net.tensor_shape(out))
    if len(o) == 3:
        out = net.add_layer("Reshape", f"{layer.name}/as_1d", [out], dict(target_shape=[o[1], o[2]]))
    return out


def _int1(name, arg, value, allow_zero=False):
    """An int, or a 1-tuple of one (Keras's 1-D arguments)."""
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    return _pair(name, arg, (value, value), allow_zero=allow_zero)[0]
