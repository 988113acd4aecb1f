// Elementwise activations and row softmax. Backward takes both x and y so each kind uses the
// cheaper one (relu/leaky_relu read x; sigmoid/tanh read y).
#pragma once

namespace cnnbp {

enum class Act : int { linear = 0, relu = 1, leaky_relu = 2, sigmoid = 3, tanh = 4, softmax = 5 };

}  // namespace cnnbp
