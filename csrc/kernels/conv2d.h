// conv2d: NHWC activations, HWIO (R,S,C,K) weights, as Keras stores them.
//   conv2d_forward        y  = conv(x, w) + b
//   conv2d_backward_data  dx = conv_transpose(dy, w)     (or dx += ..., accumulate)
//   conv2d_backward_weight dw = corr(x, dy), db = sum(dy)   (bias gradient fused)
// All shape arithmetic lives in make_conv2d_params; kernels only read the struct.
#pragma once
#include <cstdint>

namespace cnnbp {

struct Conv2dParams {
  int N, H, W, C;   // input  [N,H,W,C]
  int K, R, S;      // filters, kernel height, kernel width: weights [R,S,C,K]
  int sh, sw;       // strides
  int dh, dw;       // dilations
  int pt, pb, pl, pr;  // zero padding top, bottom, left, right
  int P, Q;         // output height and width: y [N,P,Q,K]
  int relu;         // forward applies max(y, 0) as it stores (ReLU fused; NaN propagates)
  int algo;         // ConvAlgo: 0 = chosen per shape (CNNBP_CONV_ALGO), or one forced by the caller
};

// Algorithms of the float conv2d kernels. Winograd F(2x2,3x3) and F(4x4,3x3) take stride-1,
// dilation-1 3x3 layers (every pass: forward, data gradient, weight gradient); everything else runs
// the direct kernels. kConvAuto asks the kernels to choose (see conv_algo_setting).
enum ConvAlgo : int { kConvAuto = 0, kConvDirect = 1, kConvWinograd2 = 2, kConvWinograd4 = 4 };

// CNNBP_CONV_ALGO, read once: "direct", "winograd" (= "winograd4"), "winograd2", "winograd4" force
// an algorithm wherever it applies; "auto" measures the candidates once per layer shape when the
// network plans it (fastest wins; the choice may differ between runs, so results may too); unset
// (or "heuristic"): a fixed rule of the layer's shape, the same bits on every run and thread count.
// Returns kConvDirect/kConvWinograd2/kConvWinograd4, kConvAuto for "auto", -1 for the rule.
int conv_algo_setting();
const char* conv_algo_setting_name();

// One float table's conv2d kernels, which take the algorithm forced in p.algo (kernels.h).
struct Conv2dKernels {
  int64_t (*workspace)(const Conv2dParams& p, int nthreads);
  void (*forward)(float* y, const float* x, const float* w, const float* b, float* ws, const Conv2dParams& p);
  void (*backward_data)(float* dx, const float* dy, const float* w, float* ws, const Conv2dParams& p,
                        bool accumulate);
  void (*backward_weight)(float* dw, float* db, const float* dy, const float* x, float* ws, const Conv2dParams& p);
};

// CNNBP_CONV_ALGO=auto: the fastest of direct, F(2x2) and F(4x4) for pass `pass` (0 forward, 1 data
// gradient, 2 weight gradient) of p on kernels k, timed on random data the first time a (table,
// shape, thread count) is asked for and cached for the process. Outside the ISA objects: the
// cache's standard-library code must not be compiled with an ISA's flags (kernels_isa.cpp).
int conv_algo_measured(const Conv2dKernels& k, const Conv2dParams& p, int pass);

// Padding modes shared by conv and pooling.
enum class PadMode { valid = 0, same = 1, explicit_ = 2 };

// Keras/TensorFlow 'same': output = ceil(in / stride), the odd pixel of padding goes after.
void same_padding(int in, int k, int stride, int dilation, int* before, int* after);

// Validates and fills every field; throws std::invalid_argument naming `who` on bad input.
Conv2dParams make_conv2d_params(const char* who, int N, int H, int W, int C, int K, int R, int S,
                                int sh, int sw, int dh, int dw, int pt, int pb, int pl, int pr);


}  // namespace cnnbp
