// pool2d: max and average pooling over NHWC, and global average pooling.
//   max_pool2d_forward records, per output element, the flat input position (ih*W+iw) it took,
//   so backward routes the gradient there; NaN propagates (the first NaN in a window wins).
//   avg_pool2d divides by the number of real (non-padding) inputs in the window, as Keras.
#pragma once
#include <cstdint>

namespace cnnbp {

struct Pool2dParams {
  int N, H, W, C;      // input  [N,H,W,C]
  int R, S;            // window height, width
  int sh, sw;          // strides
  int pt, pb, pl, pr;  // padding (never read: padded positions are skipped)
  int P, Q;            // output [N,P,Q,C]
};

Pool2dParams make_pool2d_params(const char* who, int N, int H, int W, int C, int R, int S, int sh,
                                int sw, int pt, int pb, int pl, int pr);

}  // namespace cnnbp
