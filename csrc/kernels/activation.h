// Elementwise activations and row softmax; PReLU (prelu_forward / prelu_backward: a learned
// slope per element of a sample, shared along some axes through an index map). Backward takes both x and y so each kind uses the
// cheaper one (relu/leaky_relu read x; sigmoid/tanh read y).
#pragma once

namespace cnnbp {

enum class Act : int {
  linear = 0, relu = 1, leaky_relu = 2, sigmoid = 3, tanh = 4, softmax = 5,
  // Keras's other activations (alpha: elu's alpha, relu_max's max_value); their backward reads x.
  elu = 6,           // x > 0 ? x : alpha (e^x - 1)
  selu = 7,          // 1.0507009873554805 * elu(x, 1.6732632423543772)
  gelu = 8,          // x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))   (Keras's default, approximate=False)
  swish = 9,         // x sigmoid(x) (silu)
  softplus = 10,     // log(1 + e^x)
  hard_sigmoid = 11, // clip(x / 6 + 1/2, 0, 1)   (Keras 3)
  relu_max = 12,     // min(max(x, 0), alpha): ReLU(max_value=alpha), relu6
};
constexpr int kActKinds = 13;
constexpr const char* kActNames[kActKinds] = {"linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax", "elu",
                                              "selu", "gelu", "swish", "softplus", "hard_sigmoid", "relu_max"};

// Kinds whose derivative is a function of the output alone: a layer with weights may apply them
// to its own output in place (FusedAct); the others need their input kept for backward.
inline bool act_derivative_from_output(Act a) {
  return a == Act::linear || a == Act::relu || a == Act::leaky_relu || a == Act::sigmoid || a == Act::tanh ||
         a == Act::relu_max;
}

}  // namespace cnnbp
