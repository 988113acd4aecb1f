# Type stub of the cnnbp._core extension (generated with pybind11-stubgen from the built module).
"""
cnnbp C++ core: kernels, network and training step.
"""
from __future__ import annotations
import collections.abc
import numpy
import numpy.typing
import typing
ops: typing.Any  # the raw kernels; cnnbp.ops wraps them
__all__: list[str] = ['Network32', 'Network64', 'NumericalError', 'activation_names', 'build_info', 'compiled_capabilities', 'cpu_capability', 'detected_capability', 'gather_rows', 'get_num_threads', 'layer_kinds', 'loss_names', 'memory_budget', 'ops', 'set_num_threads']
class NumericalError(ArithmeticError):
    pass
class Network32:
    """
    The C++ network: layers in order, flat parameter/gradient buffers, the training step.
    """
    def __init__(self, input_shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> None:
        ...
    def activation(self, index: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.float32]:
        """
        A copy of layer i's output from the last forward pass.
        """
    def add_layer(self, kind: str, name: str, inputs: typing.Any = None, config: dict = {}) -> int:
        """
        Append a node of the given kind (see cnnbp._core.layer_kinds()) reading the outputs of nodes `inputs` (-1: the model input; None: the last node); config holds its options. Returns its index.
        """
    def apply_update(self) -> None:
        """
        One optimizer step over the flat buffers.
        """
    def backward(self, y: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], input_grad: bool = False) -> tuple:
        """
        Loss on the last forward pass and backward into the gradient buffer: (loss, correct, dx or None).
        """
    def backward_between(self, dout: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], from_layer: typing.SupportsInt | typing.SupportsIndex, stop_layer: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.float32]:
        """
        Backward through layers [stop_layer, from_layer) of the last forward pass: dout is the gradient of layer from_layer-1's output; returns the gradient of layer stop_layer's input.
        """
    def backward_from_output(self, dout: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], input_grad: bool = True) -> typing.Any:
        """
        Backward from a given output gradient (saliency maps).
        """
    def backward_to(self, dout: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], from_node: typing.SupportsInt | typing.SupportsIndex, to_node: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.float32]:
        """
        Backward from node from_node-1 (dout: the gradient of its output) to the output of node to_node (-1: the model input), over the last forward pass; returns that gradient.
        """
    def compute_gradients(self, x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], y: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], grad_scale: typing.SupportsFloat | typing.SupportsIndex = 1.0, grads_ready: typing.Any = None, sample_weight: typing.Any = None) -> tuple[float, int]:
        """
        Forward, loss and backward on one batch, gradients times grad_scale, no update: (mean loss, correct count). The data-parallel step: all-reduce flat_grads(), then apply_update(). grads_ready(begin, end), if given, is called as each layer's gradient range of flat_grads() becomes final (last layer first), so its reduction can start during the backward pass.
        """
    def evaluate(self, x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], y: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], sample_weight: typing.Any = None) -> tuple[float, int]:
        """
        (mean loss, correct count) without updating (the loss includes the regularization penalties).
        """
    def finalize(self, seed: typing.SupportsInt | typing.SupportsIndex, keys: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex] = []) -> None:
        """
        Allocate the flat buffers and initialise every parameter (keys: the nodes' layout order and initial draws, default their indices).
        """
    def flat_grads(self) -> numpy.typing.NDArray[numpy.float32]:
        ...
    def flat_params(self) -> numpy.typing.NDArray[numpy.float32]:
        ...
    def flat_state(self) -> numpy.typing.NDArray[numpy.float32]:
        ...
    def forward(self, x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], training: bool = False, keep: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex] = []) -> numpy.typing.NDArray[numpy.float32]:
        """
        Full forward pass; keeps what backward needs, the output, and the outputs of nodes `keep` (activation(i) of any other node may be an error: its buffer was reused).
        """
    def initialize(self, seed: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def layer_info(self) -> list:
        ...
    def learning_rate_at(self, step: typing.SupportsInt | typing.SupportsIndex) -> float:
        """
        The learning rate of the update made after `step` updates.
        """
    def metric_sums(self) -> numpy.typing.NDArray[numpy.float64]:
        """
        The metric sums of the last batch (a copy).
        """
    def monitor_next(self, steps: int = 1, samples: int = 0) -> None:
        """
        Start an interval: the next training steps (each that completes an update) count in it until the next call, and `samples` of every `steps` of them (0: all; spread evenly, the first always) are read: their parameter norms, and ceil(batch / samples) samples of every output each.
        """
    def monitor_stats(self) -> dict:
        """
        The statistics of the interval since monitor_next: step (iterations after its last step), steps (how many it holds), sampled (of which read), output [nodes, 8] summed over the read steps: elements, sum, sum of squares, zeros, |y|<=0.01, |y|>=0.99, BatchNormalization mean |batch mean| and mean batch variance (per step); param [tensors, 6]: sums over the read steps of |w|, |g| and |update|/|w|, the largest |g| and |update|/|w|, the read steps with |w| > 0; param_names [(node, name)].
        """
    def optimizer_state(self) -> list:
        """
        Views of the optimizer's state buffers (momentum; or Adam's m and v).
        """
    def param_view(self, offset: typing.SupportsInt | typing.SupportsIndex, shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], grad: bool = False) -> numpy.typing.NDArray[numpy.float32]:
        """
        A numpy view of part of the flat parameter (or gradient) buffer; it keeps the network alive.
        """
    def plan_bytes(self, batch_size: typing.SupportsInt | typing.SupportsIndex) -> dict:
        """
        Bytes a training step with this batch size holds, by kind.
        """
    def predict(self, x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32]) -> numpy.typing.NDArray[numpy.float32]:
        """
        Inference forward pass.
        """
    def profile(self) -> dict:
        """
        Seconds per layer pass summed over the train steps since set_profiling(True).
        """
    def regularization_loss(self) -> float:
        """
        The penalties at the current weights.
        """
    def set_adam(self, learning_rate: typing.SupportsFloat | typing.SupportsIndex, beta_1: typing.SupportsFloat | typing.SupportsIndex, beta_2: typing.SupportsFloat | typing.SupportsIndex, epsilon: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    def set_adaptive(self, kind: str, learning_rate: typing.SupportsFloat | typing.SupportsIndex, beta_1: typing.SupportsFloat | typing.SupportsIndex = 0.9, beta_2: typing.SupportsFloat | typing.SupportsIndex = 0.999, epsilon: typing.SupportsFloat | typing.SupportsIndex = 1e-07, rho: typing.SupportsFloat | typing.SupportsIndex = 0.9, momentum: typing.SupportsFloat | typing.SupportsIndex = 0.0, centered: bool = False, initial_accumulator_value: typing.SupportsFloat | typing.SupportsIndex = 0.1, weight_decay: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> None:
        """
        The adaptive optimizers (formulas in csrc/optim/optim.h).
        """
    def set_gradient_config(self, clipnorm: typing.SupportsFloat | typing.SupportsIndex = 0.0, clipvalue: typing.SupportsFloat | typing.SupportsIndex = 0.0, global_clipnorm: typing.SupportsFloat | typing.SupportsIndex = 0.0, schedule: dict = {}) -> None:
        """
        Gradient clipping (one of the three) and the learning-rate schedule (see csrc/optim/schedule.h).
        """
    def set_loss(self, kind: str, epsilon: typing.SupportsFloat | typing.SupportsIndex = 1e-07, fuse: bool = True, delta: typing.SupportsFloat | typing.SupportsIndex = 1.0, label_smoothing: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> None:
        ...
    def set_metrics(self, specs: collections.abc.Sequence[tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex, typing.SupportsFloat | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex]]) -> None:
        """
        Metrics as (kind, k, threshold, class_id, bins) tuples (kernels/metric.h).
        """
    def set_profiling(self, on: bool) -> None:
        """
        Time every layer pass from now on (resets the totals).
        """
    def set_regularizers(self, terms: collections.abc.Sequence[tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex, typing.SupportsFloat | typing.SupportsIndex, typing.SupportsFloat | typing.SupportsIndex]]) -> None:
        """
        Penalties (node, offset, size, l1, l2) on parameter ranges: l1 sum|w| + l2 sum w^2.
        """
    def set_sgd(self, learning_rate: typing.SupportsFloat | typing.SupportsIndex, momentum: typing.SupportsFloat | typing.SupportsIndex, nesterov: bool, weight_decay: typing.SupportsFloat | typing.SupportsIndex, coupled_weight_decay: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> None:
        """
        SGD; weight_decay is decoupled (Keras 3), coupled_weight_decay adds coupled_weight_decay * p to the gradient (PyTorch's SGD weight_decay).
        """
    def set_trainable(self, node: typing.SupportsInt | typing.SupportsIndex, trainable: bool) -> None:
        """
        Freeze (False) or unfreeze node i: no parameter gradient, no update; BatchNormalization then normalises with its moving statistics.
        """
    def state_view(self, offset: typing.SupportsInt | typing.SupportsIndex, shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> numpy.typing.NDArray[numpy.float32]:
        """
        A numpy view of part of the flat state buffer (moving statistics).
        """
    def tensor_shape(self, node: typing.SupportsInt | typing.SupportsIndex) -> list[int]:
        """
        Per-sample shape of node t's output (-1: the model input).
        """
    def train_step(self, x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], y: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], sample_weight: typing.Any = None) -> tuple[float, int]:
        """
        Forward, loss, backward and update on one batch: (mean loss, correct count). The loss includes the regularization penalties; sample_weight: per-sample loss weights (sum_i w_i loss_i / N).
        """
    @property
    def check_numerics(self) -> bool:
        """
        Debug: check every layer's output and gradients for NaN/Inf in each training step.
        """
    @check_numerics.setter
    def check_numerics(self, arg1: bool) -> None:
        ...
    @property
    def precision(self) -> str:
        """
        Compute precision: 'float32' ('float64'), or 'mixed_bfloat16' (conv2d and dense in bf16 with fp32 accumulation).
        """
    @precision.setter
    def precision(self, arg1: str) -> None:
        ...
    @property
    def folded_pairs(self) -> int:
        """
        Convolution + BatchNormalization pairs that predict/evaluate fold.
        """
    @property
    def folding(self) -> bool:
        """
        predict/evaluate fold inference BatchNormalization into the convolution before it.
        """
    @folding.setter
    def folding(self, arg1: bool) -> None:
        ...
    @property
    def input_shape(self) -> list[int]:
        ...
    @property
    def iterations(self) -> int:
        ...
    @iterations.setter
    def iterations(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def learning_rate(self) -> float:
        ...
    @learning_rate.setter
    def learning_rate(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def loss(self) -> str:
        ...
    @property
    def loss_fused(self) -> bool:
        ...
    @property
    def monitoring(self) -> bool:
        """
        Whether the training monitor can be armed (allocates a copy of the parameters).
        """
    @monitoring.setter
    def monitoring(self, arg1: bool) -> None:
        ...
    @property
    def num_nodes(self) -> int:
        ...
    @property
    def num_params(self) -> int:
        """
        Parameters (trained or frozen), without the alignment padding of the flat buffer.
        """
    @property
    def num_state(self) -> int:
        """
        Non-trainable state values (moving statistics).
        """
    @property
    def output_shape(self) -> list[int]:
        ...
    @property
    def rng_stream(self) -> int:
        """
        Dropout stream (the rank in data-parallel training; 0 = single process).
        """
    @rng_stream.setter
    def rng_stream(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class Network64:
    """
    The C++ network: layers in order, flat parameter/gradient buffers, the training step.
    """
    def __init__(self, input_shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> None:
        ...
    def activation(self, index: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.float64]:
        """
        A copy of layer i's output from the last forward pass.
        """
    def add_layer(self, kind: str, name: str, inputs: typing.Any = None, config: dict = {}) -> int:
        """
        Append a node of the given kind (see cnnbp._core.layer_kinds()) reading the outputs of nodes `inputs` (-1: the model input; None: the last node); config holds its options. Returns its index.
        """
    def apply_update(self) -> None:
        """
        One optimizer step over the flat buffers.
        """
    def backward(self, y: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], input_grad: bool = False) -> tuple:
        """
        Loss on the last forward pass and backward into the gradient buffer: (loss, correct, dx or None).
        """
    def backward_between(self, dout: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], from_layer: typing.SupportsInt | typing.SupportsIndex, stop_layer: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.float64]:
        """
        Backward through layers [stop_layer, from_layer) of the last forward pass: dout is the gradient of layer from_layer-1's output; returns the gradient of layer stop_layer's input.
        """
    def backward_from_output(self, dout: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], input_grad: bool = True) -> typing.Any:
        """
        Backward from a given output gradient (saliency maps).
        """
    def backward_to(self, dout: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], from_node: typing.SupportsInt | typing.SupportsIndex, to_node: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.float64]:
        """
        Backward from node from_node-1 (dout: the gradient of its output) to the output of node to_node (-1: the model input), over the last forward pass; returns that gradient.
        """
    def compute_gradients(self, x: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], y: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], grad_scale: typing.SupportsFloat | typing.SupportsIndex = 1.0, grads_ready: typing.Any = None, sample_weight: typing.Any = None) -> tuple[float, int]:
        """
        Forward, loss and backward on one batch, gradients times grad_scale, no update: (mean loss, correct count). The data-parallel step: all-reduce flat_grads(), then apply_update(). grads_ready(begin, end), if given, is called as each layer's gradient range of flat_grads() becomes final (last layer first), so its reduction can start during the backward pass.
        """
    def evaluate(self, x: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], y: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], sample_weight: typing.Any = None) -> tuple[float, int]:
        """
        (mean loss, correct count) without updating (the loss includes the regularization penalties).
        """
    def finalize(self, seed: typing.SupportsInt | typing.SupportsIndex, keys: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex] = []) -> None:
        """
        Allocate the flat buffers and initialise every parameter (keys: the nodes' layout order and initial draws, default their indices).
        """
    def flat_grads(self) -> numpy.typing.NDArray[numpy.float64]:
        ...
    def flat_params(self) -> numpy.typing.NDArray[numpy.float64]:
        ...
    def flat_state(self) -> numpy.typing.NDArray[numpy.float64]:
        ...
    def forward(self, x: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], training: bool = False, keep: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex] = []) -> numpy.typing.NDArray[numpy.float64]:
        """
        Full forward pass; keeps what backward needs, the output, and the outputs of nodes `keep` (activation(i) of any other node may be an error: its buffer was reused).
        """
    def initialize(self, seed: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def layer_info(self) -> list:
        ...
    def learning_rate_at(self, step: typing.SupportsInt | typing.SupportsIndex) -> float:
        """
        The learning rate of the update made after `step` updates.
        """
    def metric_sums(self) -> numpy.typing.NDArray[numpy.float64]:
        """
        The metric sums of the last batch (a copy).
        """
    def monitor_next(self, steps: int = 1, samples: int = 0) -> None:
        """
        Start an interval: the next training steps (each that completes an update) count in it until the next call, and `samples` of every `steps` of them (0: all; spread evenly, the first always) are read: their parameter norms, and ceil(batch / samples) samples of every output each.
        """
    def monitor_stats(self) -> dict:
        """
        The statistics of the interval since monitor_next: step (iterations after its last step), steps (how many it holds), sampled (of which read), output [nodes, 8] summed over the read steps: elements, sum, sum of squares, zeros, |y|<=0.01, |y|>=0.99, BatchNormalization mean |batch mean| and mean batch variance (per step); param [tensors, 6]: sums over the read steps of |w|, |g| and |update|/|w|, the largest |g| and |update|/|w|, the read steps with |w| > 0; param_names [(node, name)].
        """
    def optimizer_state(self) -> list:
        """
        Views of the optimizer's state buffers (momentum; or Adam's m and v).
        """
    def param_view(self, offset: typing.SupportsInt | typing.SupportsIndex, shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], grad: bool = False) -> numpy.typing.NDArray[numpy.float64]:
        """
        A numpy view of part of the flat parameter (or gradient) buffer; it keeps the network alive.
        """
    def plan_bytes(self, batch_size: typing.SupportsInt | typing.SupportsIndex) -> dict:
        """
        Bytes a training step with this batch size holds, by kind.
        """
    def predict(self, x: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> numpy.typing.NDArray[numpy.float64]:
        """
        Inference forward pass.
        """
    def profile(self) -> dict:
        """
        Seconds per layer pass summed over the train steps since set_profiling(True).
        """
    def regularization_loss(self) -> float:
        """
        The penalties at the current weights.
        """
    def set_adam(self, learning_rate: typing.SupportsFloat | typing.SupportsIndex, beta_1: typing.SupportsFloat | typing.SupportsIndex, beta_2: typing.SupportsFloat | typing.SupportsIndex, epsilon: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    def set_adaptive(self, kind: str, learning_rate: typing.SupportsFloat | typing.SupportsIndex, beta_1: typing.SupportsFloat | typing.SupportsIndex = 0.9, beta_2: typing.SupportsFloat | typing.SupportsIndex = 0.999, epsilon: typing.SupportsFloat | typing.SupportsIndex = 1e-07, rho: typing.SupportsFloat | typing.SupportsIndex = 0.9, momentum: typing.SupportsFloat | typing.SupportsIndex = 0.0, centered: bool = False, initial_accumulator_value: typing.SupportsFloat | typing.SupportsIndex = 0.1, weight_decay: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> None:
        """
        The adaptive optimizers (formulas in csrc/optim/optim.h).
        """
    def set_gradient_config(self, clipnorm: typing.SupportsFloat | typing.SupportsIndex = 0.0, clipvalue: typing.SupportsFloat | typing.SupportsIndex = 0.0, global_clipnorm: typing.SupportsFloat | typing.SupportsIndex = 0.0, schedule: dict = {}) -> None:
        """
        Gradient clipping (one of the three) and the learning-rate schedule (see csrc/optim/schedule.h).
        """
    def set_loss(self, kind: str, epsilon: typing.SupportsFloat | typing.SupportsIndex = 1e-07, fuse: bool = True, delta: typing.SupportsFloat | typing.SupportsIndex = 1.0, label_smoothing: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> None:
        ...
    def set_metrics(self, specs: collections.abc.Sequence[tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex, typing.SupportsFloat | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex]]) -> None:
        """
        Metrics as (kind, k, threshold, class_id, bins) tuples (kernels/metric.h).
        """
    def set_profiling(self, on: bool) -> None:
        """
        Time every layer pass from now on (resets the totals).
        """
    def set_regularizers(self, terms: collections.abc.Sequence[tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex, typing.SupportsFloat | typing.SupportsIndex, typing.SupportsFloat | typing.SupportsIndex]]) -> None:
        """
        Penalties (node, offset, size, l1, l2) on parameter ranges: l1 sum|w| + l2 sum w^2.
        """
    def set_sgd(self, learning_rate: typing.SupportsFloat | typing.SupportsIndex, momentum: typing.SupportsFloat | typing.SupportsIndex, nesterov: bool, weight_decay: typing.SupportsFloat | typing.SupportsIndex, coupled_weight_decay: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> None:
        """
        SGD; weight_decay is decoupled (Keras 3), coupled_weight_decay adds coupled_weight_decay * p to the gradient (PyTorch's SGD weight_decay).
        """
    def set_trainable(self, node: typing.SupportsInt | typing.SupportsIndex, trainable: bool) -> None:
        """
        Freeze (False) or unfreeze node i: no parameter gradient, no update; BatchNormalization then normalises with its moving statistics.
        """
    def state_view(self, offset: typing.SupportsInt | typing.SupportsIndex, shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> numpy.typing.NDArray[numpy.float64]:
        """
        A numpy view of part of the flat state buffer (moving statistics).
        """
    def tensor_shape(self, node: typing.SupportsInt | typing.SupportsIndex) -> list[int]:
        """
        Per-sample shape of node t's output (-1: the model input).
        """
    def train_step(self, x: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], y: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], sample_weight: typing.Any = None) -> tuple[float, int]:
        """
        Forward, loss, backward and update on one batch: (mean loss, correct count). The loss includes the regularization penalties; sample_weight: per-sample loss weights (sum_i w_i loss_i / N).
        """
    @property
    def check_numerics(self) -> bool:
        """
        Debug: check every layer's output and gradients for NaN/Inf in each training step.
        """
    @check_numerics.setter
    def check_numerics(self, arg1: bool) -> None:
        ...
    @property
    def precision(self) -> str:
        """
        Compute precision: 'float32' ('float64'), or 'mixed_bfloat16' (conv2d and dense in bf16 with fp32 accumulation).
        """
    @precision.setter
    def precision(self, arg1: str) -> None:
        ...
    @property
    def folded_pairs(self) -> int:
        """
        Convolution + BatchNormalization pairs that predict/evaluate fold.
        """
    @property
    def folding(self) -> bool:
        """
        predict/evaluate fold inference BatchNormalization into the convolution before it.
        """
    @folding.setter
    def folding(self, arg1: bool) -> None:
        ...
    @property
    def input_shape(self) -> list[int]:
        ...
    @property
    def iterations(self) -> int:
        ...
    @iterations.setter
    def iterations(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def learning_rate(self) -> float:
        ...
    @learning_rate.setter
    def learning_rate(self, arg1: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def loss(self) -> str:
        ...
    @property
    def loss_fused(self) -> bool:
        ...
    @property
    def monitoring(self) -> bool:
        """
        Whether the training monitor can be armed (allocates a copy of the parameters).
        """
    @monitoring.setter
    def monitoring(self, arg1: bool) -> None:
        ...
    @property
    def num_nodes(self) -> int:
        ...
    @property
    def num_params(self) -> int:
        """
        Parameters (trained or frozen), without the alignment padding of the flat buffer.
        """
    @property
    def num_state(self) -> int:
        """
        Non-trainable state values (moving statistics).
        """
    @property
    def output_shape(self) -> list[int]:
        ...
    @property
    def rng_stream(self) -> int:
        """
        Dropout stream (the rank in data-parallel training; 0 = single process).
        """
    @rng_stream.setter
    def rng_stream(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
def _buffer_allocations() -> int:
    """
    Buffers allocated so far (a steady-state training step allocates none).
    """
def _in_forked_child() -> bool:
    ...
def _live_networks() -> int:
    """
    C++ networks alive (tests).
    """
def _mxcsr() -> int:
    """
    The calling thread's MXCSR (tests: cnnbp leaves it as it was).
    """
def _mxcsr_in_region() -> int:
    """
    MXCSR as cnnbp's parallel work sees it (tests).
    """
def _threads_in_region() -> int:
    """
    How many threads one parallel region runs with the current setting (tests).
    """
def activation_names() -> list[str]:
    """
    The C++ activation kinds by name, in their enum order.
    """
def build_info() -> dict:
    ...
def compiled_capabilities() -> list[str]:
    """
    The kernel paths built into this extension.
    """
def cpu_capability() -> str:
    """
    The kernel path in use: 'avx512', 'avx2' or 'baseline'.
    """
def bf16_detected() -> str:
    """
    'avx512_bf16' when the CPU (and this build) can run the bf16 kernels, else 'emulated'.
    """
def bf16_path() -> str:
    """
    The mixed_bfloat16 kernels in use: 'avx512_bf16' (vdpbf16ps) or 'emulated' (CNNBP_BF16=emulated forces it).
    """
def conv_algo_setting() -> str:
    """
    CNNBP_CONV_ALGO as read at import: 'heuristic' (unset), 'direct', 'winograd2', 'winograd4' or 'auto'.
    """
def detected_capability() -> str:
    """
    The best path this CPU supports.
    """
def gather_rows(src: numpy.ndarray, idx: typing.Any, out: numpy.ndarray) -> None:
    """
    out[r] = src[idx[r]] (idx None: src[r]) for the first len(idx) rows of out, converted to out's float dtype, without the GIL.
    """
def get_num_threads() -> int:
    """
    Threads cnnbp's parallel regions use.
    """
def layer_kinds() -> list[str]:
    """
    The layer kinds Network32/64.add_layer builds.
    """
def loss_names() -> list[str]:
    """
    The C++ loss kinds by name, in their enum order.
    """
def memory_budget() -> tuple[typing.Any, str]:
    """
    (bytes, source): the most memory a plan may take now (None when unknown), and which limit sets it.
    """
def set_num_threads(n: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Set the thread count of cnnbp's parallel regions.
    """
__version__: str = '0.1.0'
