// merge: the kernels of multi-input and reshaping layers, over flat or channels-last tensors.
//   merge_forward / merge_backward: elementwise Add, Subtract (2 inputs), Multiply, Average,
//     Maximum over k same-shaped inputs; the gradient of Maximum goes to the first input that
//     holds the maximum (as TensorFlow's maximum).
//   concat_forward / concat_backward: one input's slice [M, Ci] of a [M, Ctot] concatenation
//     along the last axis, at column offset off.
//   window_to_small / window_to_big: copy between a [N,H,W,C] tensor and a [N,h,w,C] window of it
//     at (top, left): cropping forward and zero-padding backward, and the reverse (window_to_big
//     zeroes the border unless accumulating).
//   permute: y = x with its per-sample axes reordered (rank <= 4; y's axis j is x's axis
//     perm[j]); the backward is the inverse permutation, with accumulate.
//   channel_bias_add / channel_bias_grad: y[m, c] += b[c] over [M, C] rows, and db[c] = sum_m dy[m, c]
//     (the bias of a transposed convolution).
// Every backward takes accumulate: add into dx (a tensor with several consumers receives the
// sum of their gradients) instead of overwriting it.
#pragma once
#include <cstdint>

namespace cnnbp {

enum class MergeOp : int { add = 0, subtract = 1, multiply = 2, average = 3, maximum = 4 };

}  // namespace cnnbp
