"""Image preprocessing and augmentation layers, Keras's names and arguments.

The ``Random*`` layers augment while training only (``fit``, ``train_on_batch``) and are the
identity in ``predict`` and ``evaluate`` -- except ``RandomCrop``, which then takes the centre
window. Each draws one set of numbers per sample from a counter-based generator keyed by (the
layer's seed, the optimizer step, the data-parallel rank): the same seed gives the same training,
a resumed run continues the same draws, and the thread count changes nothing. They run in C++
over channels-last batches (csrc/nn/preprocessing.cpp, kernels in csrc/kernels/augment.h).
``Rescaling`` and ``Normalization`` apply in training and inference alike.

Geometric layers map each output pixel to a source point (pixel centres at integer coordinates,
rotations and zooms about the image centre) and read it with ``interpolation`` ('bilinear' or
'nearest'); points outside the image follow ``fill_mode``: 'constant' (``fill_value``), 'reflect'
(d c b a | a b c d | d c b a), 'wrap' (a b c d | a b c d) or 'nearest' (a a | a b c d | d d)."""

import numbers

import numpy as np

from .base import Layer

__all__ = ["RandomFlip", "RandomTranslation", "RandomRotation", "RandomZoom", "RandomCrop", "RandomContrast",
           "RandomBrightness", "RandomErasing", "Rescaling", "Normalization"]

_FILL_MODES = ("constant", "reflect", "wrap", "nearest")


def _number(name, arg, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v):
        raise ValueError(f"{name}: {arg} must be a finite number, got {v!r}")
    return float(v)


def _factor(name, arg, factor, lo, hi, symmetric=True):
    """A float f -> (-f, f) (or (f, f) when not symmetric), or a pair (lower, upper); each in [lo, hi]."""
    if isinstance(factor, (tuple, list)):
        if len(factor) != 2:
            raise ValueError(f"{name}: {arg} must be a number or a pair (lower, upper), got {factor!r}")
        a, b = (_number(name, arg, v) for v in factor)
    else:
        f = _number(name, arg, factor)
        if symmetric and f < 0:
            raise ValueError(f"{name}: {arg} as a single number must be >= 0, got {f}")
        a, b = (-f, f) if symmetric else (f, f)
    if not (lo <= a <= b <= hi):
        raise ValueError(f"{name}: {arg} must give lower <= upper within [{lo:g}, {hi:g}], got {factor!r}")
    return a, b


def _value_range(name, value_range):
    try:
        a, b = value_range
    except (TypeError, ValueError):
        raise ValueError(f"{name}: value_range must be a pair (low, high), got {value_range!r}") from None
    a, b = _number(name, "value_range", a), _number(name, "value_range", b)
    if not a < b:
        raise ValueError(f"{name}: value_range must have low < high, got {value_range!r}")
    return a, b


class _Random(Layer):
    """A layer with a seed: the model's when none is given (derived from cnnbp.set_seed / the model seed)."""

    def __init__(self, seed=None, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"{self.name}: only channels_last images are supported, got data_format={data_format!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise TypeError(f"{self.name}: seed must be an int or None, got {seed!r}")
        self.seed = seed

    def _add_to(self, net, inputs, seed=0):
        s = self.seed if self.seed is not None else seed
        self._effective_seed = int(s) & 0xFFFFFFFFFFFFFFFF
        return net.add_layer(self._core_kind, self.name, inputs, dict(self._core_config(), seed=self._effective_seed))

    def get_config(self):
        return dict(super().get_config(), seed=getattr(self, "_effective_seed", self.seed))


class _Warp(_Random):
    def _warp_args(self, fill_mode, interpolation, fill_value):
        if fill_mode not in _FILL_MODES:
            raise ValueError(f"{self.name}: fill_mode must be one of {', '.join(map(repr, _FILL_MODES))}, "
                             f"got {fill_mode!r}")
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"{self.name}: interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
        self.fill_mode, self.interpolation = fill_mode, interpolation
        self.fill_value = _number(self.name, "fill_value", fill_value)

    def _warp_config(self):
        return dict(fill_mode=self.fill_mode, interpolation=self.interpolation, fill_value=self.fill_value)


class RandomFlip(_Random):
    """Flips each image left-right and/or up-down with probability 1/2 each (mode 'horizontal',
    'vertical' or 'horizontal_and_vertical', Keras's default)."""

    _core_kind = "RandomFlip"

    def __init__(self, mode="horizontal_and_vertical", seed=None, **kwargs):
        super().__init__(seed, **kwargs)
        if mode not in ("horizontal", "vertical", "horizontal_and_vertical"):
            raise ValueError(f"{self.name}: mode must be 'horizontal', 'vertical' or 'horizontal_and_vertical', "
                             f"got {mode!r}")
        self.mode = mode

    def _core_config(self):
        return dict(mode=self.mode)

    def get_config(self):
        return dict(super().get_config(), mode=self.mode)


class RandomTranslation(_Warp):
    """Shifts each image by a random fraction of its height and width: ``height_factor`` 0.1 (or
    (-0.1, 0.1)) shifts by up to 10 % of the height; negative values shift up (left)."""

    _core_kind = "RandomTranslation"

    def __init__(self, height_factor, width_factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, **kwargs):
        super().__init__(seed, **kwargs)
        self.height_factor = _factor(self.name, "height_factor", height_factor, -1, 1)
        self.width_factor = _factor(self.name, "width_factor", width_factor, -1, 1)
        self._warp_args(fill_mode, interpolation, fill_value)

    def _core_config(self):
        (hl, hu), (wl, wu) = self.height_factor, self.width_factor
        return dict(self._warp_config(), height_lower=hl, height_upper=hu, width_lower=wl, width_upper=wu)

    def get_config(self):
        return dict(super().get_config(), height_factor=list(self.height_factor), width_factor=list(self.width_factor),
                    **self._warp_config())


class RandomRotation(_Warp):
    """Rotates each image about its centre by a random fraction of a full turn: ``factor`` 0.1 (or
    (-0.1, 0.1)) rotates by up to 36 degrees either way; positive is counter-clockwise."""

    _core_kind = "RandomRotation"

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0, **kwargs):
        super().__init__(seed, **kwargs)
        self.factor = _factor(self.name, "factor", factor, -1, 1)
        self._warp_args(fill_mode, interpolation, fill_value)

    def _core_config(self):
        return dict(self._warp_config(), lower=self.factor[0], upper=self.factor[1])

    def get_config(self):
        return dict(super().get_config(), factor=list(self.factor), **self._warp_config())


class RandomZoom(_Warp):
    """Zooms each image about its centre: ``height_factor`` 0.2 (or (-0.2, 0.2)) scales the source
    window by 1 + a draw in it (positive: zoomed out, negative: zoomed in). ``width_factor=None``
    keeps the aspect ratio (one draw for both axes)."""

    _core_kind = "RandomZoom"

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, **kwargs):
        super().__init__(seed, **kwargs)
        self.height_factor = _factor(self.name, "height_factor", height_factor, -1, 1e6)
        self.width_factor = None if width_factor is None else _factor(self.name, "width_factor", width_factor, -1, 1e6)
        for f in (self.height_factor, self.width_factor):
            if f is not None and f[0] <= -1:
                raise ValueError(f"{self.name}: zoom factors must be > -1, got {f}")
        self._warp_args(fill_mode, interpolation, fill_value)

    def _core_config(self):
        cfg = dict(self._warp_config(), height_lower=self.height_factor[0], height_upper=self.height_factor[1],
                   same=self.width_factor is None)
        if self.width_factor is not None:
            cfg.update(width_lower=self.width_factor[0], width_upper=self.width_factor[1])
        return cfg

    def get_config(self):
        return dict(super().get_config(), height_factor=list(self.height_factor),
                    width_factor=None if self.width_factor is None else list(self.width_factor), **self._warp_config())


class RandomCrop(_Random):
    """A random ``height`` x ``width`` window of each image while training, the centre window in
    inference. ``padding=p`` first pads the image with p zeros on every side: ``RandomCrop(32, 32,
    padding=4)`` on 32x32 images is the classic pad-and-crop augmentation (and the identity in
    inference)."""

    _core_kind = "RandomCrop"

    def __init__(self, height, width, seed=None, padding=0, **kwargs):
        super().__init__(seed, **kwargs)
        for arg, v in (("height", height), ("width", width), ("padding", padding)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < (0 if arg == "padding" else 1):
                raise ValueError(f"{self.name}: {arg} must be {'a non-negative' if arg == 'padding' else 'a positive'} "
                                 f"int, got {v!r}")
        self.height, self.width, self.padding = int(height), int(width), int(padding)

    def _core_config(self):
        return dict(height=self.height, width=self.width, padding=self.padding)

    def get_config(self):
        return dict(super().get_config(), height=self.height, width=self.width, padding=self.padding)


class _Photometric(_Random):
    """A per-image draw in factor = (lower, upper), the result clipped to value_range."""

    def _core_config(self):
        return dict(lower=self.factor[0], upper=self.factor[1], value_lower=self.value_range[0],
                    value_upper=self.value_range[1])

    def get_config(self):
        return dict(super().get_config(), factor=list(self.factor), value_range=list(self.value_range))


class RandomContrast(_Photometric):
    """Per image and channel ``(x - mean) * f + mean``, f drawn in [1 - lower, 1 + upper] (``factor``
    f0 gives [1 - f0, 1 + f0]), clipped to ``value_range``."""

    _core_kind = "RandomContrast"

    def __init__(self, factor, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(seed, **kwargs)
        if isinstance(factor, (tuple, list)) and len(factor) == 2:
            lower, upper = (_number(self.name, "factor", v) for v in factor)
        else:
            lower = upper = _number(self.name, "factor", factor)
        if not (0 <= lower <= 1 and upper >= 0):
            raise ValueError(f"{self.name}: factor must be f >= 0 or (lower, upper) with 0 <= lower <= 1 and upper "
                             f">= 0 (the contrast factor is drawn in [1 - lower, 1 + upper]), got {factor!r}")
        self.factor = (lower, upper)
        self.value_range = _value_range(self.name, value_range)


class RandomBrightness(_Photometric):
    """Adds ``d * (high - low)`` to every pixel of an image, d drawn in ``factor`` (0.2 -> [-0.2, 0.2],
    within [-1, 1]), clipped to ``value_range = (low, high)``."""

    _core_kind = "RandomBrightness"

    def __init__(self, factor, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(seed, **kwargs)
        self.factor = _factor(self.name, "factor", factor, -1, 1)
        self.value_range = _value_range(self.name, value_range)


class RandomErasing(_Random):
    """Random erasing (Cutout): with probability ``factor``, one rectangle of each image -- its area
    a fraction of the image drawn in ``scale``, its aspect ratio (height / width) drawn
    log-uniformly in ``ratio`` -- is set to ``fill_value``. Cutout with a fixed square is
    ``scale=(s, s), ratio=(1, 1)``."""

    _core_kind = "RandomErasing"

    def __init__(self, factor=1.0, scale=(0.02, 0.33), ratio=(0.3, 3.3), fill_value=0.0, seed=None, **kwargs):
        super().__init__(seed, **kwargs)
        f = _number(self.name, "factor", factor)
        if not 0 <= f <= 1:
            raise ValueError(f"{self.name}: factor (the probability of erasing) must be in [0, 1], got {factor!r}")
        self.factor = f
        self.scale = _factor(self.name, "scale", scale, 0, 1)
        self.ratio = _factor(self.name, "ratio", ratio, 1e-6, 1e6)
        self.fill_value = _number(self.name, "fill_value", fill_value)

    def _core_config(self):
        return dict(factor=self.factor, scale_lower=self.scale[0], scale_upper=self.scale[1],
                    ratio_lower=self.ratio[0], ratio_upper=self.ratio[1], fill_value=self.fill_value)

    def get_config(self):
        return dict(super().get_config(), factor=self.factor, scale=list(self.scale), ratio=list(self.ratio),
                    fill_value=self.fill_value)


class Rescaling(Layer):
    """``x * scale + offset`` (``Rescaling(1/255)`` turns 0..255 pixels into 0..1), in training and
    inference."""

    _core_kind = "Rescaling"

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = _number(self.name, "scale", scale)
        self.offset = _number(self.name, "offset", offset)

    def _core_config(self):
        return dict(scale=self.scale, offset=self.offset)

    def get_config(self):
        return dict(super().get_config(), scale=self.scale, offset=self.offset)


class Normalization(Layer):
    """``(x - mean) / max(sqrt(variance), 1e-7)`` per feature of the last axis (``invert=True``: the
    inverse map). ``mean`` and ``variance`` are given (numbers or per-feature arrays) or measured by
    ``adapt(data)``; they are non-trainable weights, saved with the model."""

    _core_kind = "Normalization"

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        if axis not in (-1, (-1,), [-1]):
            raise ValueError(f"{self.name}: only axis=-1 (the last, feature axis) is supported, got {axis!r}")
        if (mean is None) != (variance is None):
            raise ValueError(f"{self.name}: give both mean and variance, or neither (and call adapt)")
        self.axis = -1
        self.invert = bool(invert)
        self._given = None
        if mean is not None:
            m, v = np.asarray(mean, dtype=np.float64), np.asarray(variance, dtype=np.float64)
            if not (np.all(np.isfinite(m)) and np.all(np.isfinite(v))) or np.any(v < 0):
                raise ValueError(f"{self.name}: mean must be finite and variance finite and >= 0")
            self._given = (m, v)
        self._pending_weights = None

    def _core_config(self):
        return dict(invert=self.invert)

    def _bind(self, net, first, last):
        super()._bind(net, first, last)
        if self._given is not None and self._pending_weights is None:
            c = self.output_shape[-1]
            m, v = self._given
            if m.size not in (1, c) or v.size not in (1, c):
                raise ValueError(f"{self.name}: mean and variance must be numbers or arrays of {c} values (the last "
                                 f"axis), got shapes {m.shape} and {v.shape}")
            self._pending_weights = [np.broadcast_to(m.reshape(-1), (c,)), np.broadcast_to(v.reshape(-1), (c,))]

    def adapt(self, data, batch_size=None, steps=None):
        """Sets mean and variance to those of ``data`` (an array of samples, or an iterable of
        batches) per feature of the last axis, over every other axis."""
        if isinstance(data, np.ndarray) or not hasattr(data, "__iter__"):
            batches = [np.asarray(data)]
        else:
            batches = data
        n, s, ss, feat = 0, 0.0, 0.0, None
        for i, b in enumerate(batches):
            if steps is not None and i >= steps:
                break
            if isinstance(b, (tuple, list)):
                b = b[0]
            b = np.asarray(b, dtype=np.float64)
            if b.ndim == 0 or b.size == 0:
                raise ValueError(f"{self.name}: adapt expects non-empty arrays of samples, got shape {b.shape}")
            if feat is None:
                feat = b.shape[-1]
            elif b.shape[-1] != feat:
                raise ValueError(f"{self.name}: adapt got batches with {feat} and {b.shape[-1]} features")
            b = b.reshape(-1, feat)
            if not np.all(np.isfinite(b)):
                raise ValueError(f"{self.name}: adapt data contains NaN or Inf")
            n += len(b)
            s = s + b.sum(0)
            ss = ss + np.square(b).sum(0)
        if n == 0:
            raise ValueError(f"{self.name}: adapt got no data")
        mean = s / n
        var = np.maximum(ss / n - np.square(mean), 0.0)
        self._given = (mean, var)
        if self._net is not None:
            if self.output_shape[-1] != feat:
                raise ValueError(f"{self.name}: the layer has {self.output_shape[-1]} features, the data {feat}")
            self.set_weights([mean, var])
        else:
            self._pending_weights = [mean, var]

    @property
    def mean(self):
        return self._view("mean")

    @property
    def variance(self):
        return self._view("variance")

    def get_config(self):
        cfg = dict(super().get_config(), axis=-1, invert=self.invert)
        if self._net is None and self._given is not None:
            cfg.update(mean=self._given[0].tolist(), variance=self._given[1].tolist())
        return cfg
