// resize: UpSampling2D over NHWC images by integer factors (sh, sw).
//   nearest:  y[n, p, q, c] = x[n, p / sh, q / sw, c]
//   bilinear: TensorFlow's resize with half-pixel centres (Keras's 'bilinear'): the source row of
//             output row p is s = (p + 0.5) / sh - 0.5, read between max(floor(s), 0) and
//             min(ceil(s), H - 1) with weight s - floor(s); the same along columns.
//   backward adds each output gradient back to the input pixels it was read from (accumulate:
//   into dx, else dx is overwritten).
#pragma once

namespace cnnbp {

struct ResizeParams {
  int N, H, W, C;  // input [N,H,W,C]
  int sh, sw;      // factors: output [N, H*sh, W*sw, C]
  bool bilinear;
};

}  // namespace cnnbp
