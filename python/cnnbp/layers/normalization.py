"""Normalisation layers."""

import numbers

from .base import Layer, _initializer



class BatchNormalization(Layer):
    """Batch normalisation over the last (channel) axis, Keras's names and defaults.

    Training: ``gamma * (x - mean) / sqrt(var + epsilon) + beta`` with the batch's mean and (biased)
    variance per channel, and after each successful step ``moving = moving * momentum + batch *
    (1 - momentum)``. Inference, or ``trainable = False``: the moving statistics instead. The
    moving statistics are not trained (``non_trainable_weights``): the optimizer never sees them,
    and saving, loading and data-parallel training carry them along. Weights: gamma, beta,
    moving_mean, moving_variance (those of ``scale``/``center`` only when True)."""

    _core_kind = "BatchNormalization"

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        n = self.name
        if axis not in (-1, [-1], (-1,)):
            self._axis = axis  # checked when the model is built (channels_first models map axis 1 to -1)
        else:
            self._axis = -1
        for arg, v in (("momentum", momentum), ("epsilon", epsilon)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise TypeError(f"{n}: {arg} must be a number, got {v!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{n}: momentum must be in [0, 1], got {momentum}")
        if not epsilon > 0:
            raise ValueError(f"{n}: epsilon must be > 0, got {epsilon}")
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = _initializer(n, "beta_initializer", beta_initializer)
        self.gamma_initializer = _initializer(n, "gamma_initializer", gamma_initializer)
        self.moving_mean_initializer = _initializer(n, "moving_mean_initializer", moving_mean_initializer)
        self.moving_variance_initializer = _initializer(n, "moving_variance_initializer", moving_variance_initializer)

    @property
    def axis(self):
        return self._axis

    def _check_axis(self, rank, channels_first):
        a = self._axis
        ok = a == -1 or a == rank or (channels_first and rank == 3 and a == 1)
        if not ok:
            raise ValueError(f"{self.name}: only the channel axis can be normalised (axis=-1"
                             f"{', or 1 with channels_first' if rank == 3 else ''}), got axis={a}")

    def _core_config(self):
        return dict(momentum=self.momentum, epsilon=self.epsilon, center=self.center, scale=self.scale,
                    beta_initializer=self.beta_initializer, gamma_initializer=self.gamma_initializer,
                    moving_mean_initializer=self.moving_mean_initializer,
                    moving_variance_initializer=self.moving_variance_initializer,
                    activation=self._fused_act or "linear")

    def _can_fuse_relu(self):
        return True

    @property
    def gamma(self):
        return self._view("gamma")

    @property
    def beta(self):
        return self._view("beta")

    @property
    def moving_mean(self):
        return self._view("moving_mean")

    @property
    def moving_variance(self):
        return self._view("moving_variance")

    def get_config(self):
        return dict(super().get_config(), axis=self._axis, momentum=self.momentum, epsilon=self.epsilon,
                    center=self.center, scale=self.scale, **{k: v for k, v in self._core_config().items()
                                                            if k.endswith("initializer")})


class LayerNormalization(Layer):
    """Normalises each sample over its last axis: ``gamma * (x - mean) / sqrt(var + epsilon) + beta``
    with the mean and (biased) variance of that sample's features; the same in training and
    inference. Weights: gamma, beta (of ``scale``/``center`` only when True)."""

    _core_kind = "LayerNormalization"

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", rms_scaling=False, **kwargs):
        super().__init__(**kwargs)
        n = self.name
        if axis not in (-1, [-1], (-1,)):
            raise ValueError(f"{n}: only axis=-1 (the last axis) is supported, got {axis!r}")
        if rms_scaling:
            raise ValueError(f"{n}: rms_scaling=True is not supported")
        if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or not epsilon > 0:
            raise ValueError(f"{n}: epsilon must be a number > 0, got {epsilon!r}")
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = _initializer(n, "beta_initializer", beta_initializer)
        self.gamma_initializer = _initializer(n, "gamma_initializer", gamma_initializer)

    def _core_config(self):
        return dict(epsilon=self.epsilon, center=self.center, scale=self.scale,
                    beta_initializer=self.beta_initializer, gamma_initializer=self.gamma_initializer)

    def get_config(self):
        return dict(super().get_config(), epsilon=self.epsilon, center=self.center, scale=self.scale,
                    beta_initializer=self.beta_initializer, gamma_initializer=self.gamma_initializer)
