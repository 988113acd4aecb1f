// The kernel table: one struct of function pointers per ISA, chosen once at import.
// The portable templates in ref/ are compiled once per ISA (kernels_isa.cpp) into separate
// object files whose symbols all have internal linkage; each exports only its table.
#pragma once
#include <cstdint>

#include "core/cpu.h"
#include "kernels/activation.h"
#include "kernels/augment.h"
#include "kernels/batchnorm.h"
#include "kernels/conv2d.h"
#include "kernels/grouped_conv2d.h"
#include "kernels/layernorm.h"
#include "kernels/loss.h"
#include "kernels/merge.h"
#include "kernels/noise.h"
#include "kernels/metric.h"
#include "kernels/monitor.h"
#include "kernels/pool2d.h"
#include "kernels/resize.h"
#include "optim/optim.h"

namespace cnnbp {

template <typename T>
struct KernelTable {
  const char* isa;

  // conv2d (see conv2d.h). ws: conv2d_workspace(p, threads) elements of scratch for any pass
  // (the SIMD paths pad each image into a thread's part of it as they reach it).
  int64_t (*conv2d_workspace)(const Conv2dParams& p, int nthreads);
  void (*conv2d_forward)(T* y, const T* x, const T* w, const T* b, T* ws, const Conv2dParams& p);
  void (*conv2d_backward_data)(T* dx, const T* dy, const T* w, T* ws, const Conv2dParams& p, bool accumulate);
  void (*conv2d_backward_weight)(T* dw, T* db, const T* dy, const T* x, T* ws, const Conv2dParams& p);
  // The ConvAlgo pass `pass` (0 forward, 1 data gradient, 2 weight gradient) of p runs.
  int (*conv2d_algorithm)(const Conv2dParams& p, int pass);
  // A BatchNormalization+ReLU applied by the convolution as it loads its input: forward and weight
  // gradient of the convolution of max(0, x*scale[c] + shift[c]) (0 in the padding), with
  // batchnorm_apply's expression (the same bits as the two layers apart), so that the normalised
  // tensor is never stored. Only where conv2d_prologue_ok(p) (both passes run Winograd: the float
  // SIMD tables); null in the others.
  bool (*conv2d_prologue_ok)(const Conv2dParams& p);
  void (*conv2d_forward_pre)(T* y, const T* x, const T* scale, const T* shift, const T* w, const T* b, T* ws,
                             const Conv2dParams& p);
  void (*conv2d_backward_weight_pre)(T* dw, T* db, const T* dy, const T* x, const T* scale, const T* shift, T* ws,
                                     const Conv2dParams& p);

  // grouped and depthwise conv2d (see grouped_conv2d.h): G groups; no workspace.
  void (*grouped_conv2d_forward)(T* y, const T* x, const T* w, const T* b, const Conv2dParams& p, int G);
  void (*grouped_conv2d_backward_data)(T* dx, const T* dy, const T* w, const Conv2dParams& p, int G, bool accumulate);
  void (*grouped_conv2d_backward_weight)(T* dw, const T* x, const T* dy, const Conv2dParams& p, int G);

  // pool2d (see pool2d.h). argmax may be null in forward (inference).
  void (*max_pool2d_forward)(T* y, int32_t* argmax, const T* x, const Pool2dParams& p);
  // relu_y: null, or the pooling's output when its input is a ReLU's output: dx is then the
  // gradient before that ReLU (see ref/pool2d.inl)
  void (*max_pool2d_backward)(T* dx, const T* dy, const int32_t* argmax, const Pool2dParams& p, const T* relu_y);
  void (*avg_pool2d_forward)(T* y, const T* x, const Pool2dParams& p);
  void (*avg_pool2d_backward)(T* dx, const T* dy, const Pool2dParams& p);
  void (*global_avg_pool2d_forward)(T* y, const T* x, int N, int HW, int C);
  void (*global_avg_pool2d_backward)(T* dx, const T* dy, int N, int HW, int C);
  void (*global_max_pool2d_forward)(T* y, int32_t* argmax, const T* x, int N, int HW, int C);
  void (*global_max_pool2d_backward)(T* dx, const T* dy, const int32_t* argmax, int N, int HW, int C, bool accumulate);

  // batchnorm over rows of [M,C] (see batchnorm.h). ws: batchnorm_workspace(M, C, threads).
  int64_t (*batchnorm_workspace)(int64_t M, int C, int nthreads);
  void (*batchnorm_stats)(T* mean, T* var, const T* x, int64_t M, int C, T* ws);
  void (*batchnorm_apply)(T* y, const T* x, const T* scale, const T* shift, const T* add, int64_t M, int C,
                          bool relu);
  void (*batchnorm_backward)(T* dx, T* dgamma, T* dbeta, const T* dy, const T* y, const T* rscale,
                             const T* rshift, const T* radd, T* dres, bool dres_acc, const T* x, const T* mean,
                             const T* invstd, const T* gamma, int64_t M, int C, bool batch_stats, T* ws,
                             bool accumulate);

  // merge and reshaping layers (see merge.h).
  // relu: a ReLU fused after the merge (not for maximum): applied forward, masked backward (by y).
  void (*merge_forward)(T* y, const T* const* xs, int k, int64_t n, MergeOp op, bool relu);
  void (*merge_backward)(T* dx, const T* dy, const T* const* xs, const T* y, int k, int which, int64_t n, MergeOp op,
                         bool accumulate, bool relu);
  void (*concat_forward)(T* y, const T* x, int64_t M, int Ci, int Ctot, int off);
  void (*concat_backward)(T* dx, const T* dy, int64_t M, int Ci, int Ctot, int off, bool accumulate);
  void (*window_to_small)(T* small, const T* big, int N, int H, int W, int h, int w, int C, int top, int left,
                          bool accumulate);
  void (*window_to_big)(T* big, const T* small, int N, int H, int W, int h, int w, int C, int top, int left,
                        bool accumulate);
  void (*add_into)(T* y, const T* x, int64_t n);
  // dst = src rounded to bfloat16 values (nearest even; kernels/bf16.h): mixed precision's operands.
  void (*round_bf16)(T* dst, const T* src, int64_t n);
  void (*permute)(T* y, const T* x, int N, int rank, const int* dims, const int* perm, bool accumulate);
  void (*channel_bias_add)(T* y, const T* b, int64_t M, int C);
  void (*channel_bias_grad)(T* db, const T* dy, int64_t M, int C);

  // UpSampling2D (see resize.h).
  void (*resize_forward)(T* y, const T* x, const ResizeParams& p);
  void (*resize_backward)(T* dx, const T* dy, const ResizeParams& p, bool accumulate);

  // dense: x [N,I], w [I,O], b [O], y [N,O]. db may be null. ws: dense_workspace(N, I, O).
  // backward_data with accumulate adds into dx (a tensor with several readers).
  int64_t (*dense_workspace)(int N, int I, int O);
  void (*dense_forward)(T* y, const T* x, const T* w, const T* b, int N, int I, int O, T* ws);
  void (*dense_backward_data)(T* dx, const T* dy, const T* w, int N, int I, int O, T* ws, bool accumulate);
  void (*dense_backward_weight)(T* dw, T* db, const T* dy, const T* x, int N, int I, int O, T* ws);

  // activations (see activation.h); softmax over rows of [N,K].
  void (*activation_forward)(T* y, const T* x, int64_t n, Act kind, T alpha);
  void (*activation_backward)(T* dx, const T* dy, const T* x, const T* y, int64_t n, Act kind, T alpha);
  void (*softmax_forward)(T* y, const T* x, int N, int K);
  void (*softmax_backward)(T* dx, const T* dy, const T* y, int N, int K);

  // dropout: mask holds 0 or 1/(1-rate); element i of call `stream` is kept when
  // uniform(seed, stream, i) >= rate.
  void (*dropout_forward)(T* y, T* mask, const T* x, int64_t n, double rate, uint64_t seed, uint64_t stream);
  void (*dropout_backward)(T* dx, const T* dy, const T* mask, int64_t n);
  void (*prelu_forward)(T* y, const T* x, const T* alpha, const int32_t* idx, int N, int64_t S);
  void (*prelu_backward)(T* dx, T* dalpha, int64_t na, const T* dy, const T* x, const T* alpha, const int32_t* idx,
                         int N, int64_t S, bool accumulate, double* ws);

  // SpatialDropout2D and GaussianNoise (see noise.h).
  void (*channel_mask)(T* mask, int64_t n, double rate, uint64_t seed, uint64_t stream);
  void (*scale_channels)(T* y, const T* x, const T* mask, int N, int64_t M, int C);
  void (*gaussian_noise)(T* y, const T* x, int64_t n, double stddev, uint64_t seed, uint64_t stream);

  // image preprocessing layers (see augment.h): mats [N,6] per-sample source maps, factor and
  // delta [N], boxes [N,4].
  void (*warp_forward)(T* y, const T* x, const double* mats, const WarpParams& p);
  void (*warp_backward)(T* dx, const T* dy, const double* mats, const WarpParams& p, bool accumulate);
  void (*contrast_forward)(T* y, const T* x, const T* factor, int N, int64_t M, int C, double lo, double hi);
  void (*contrast_backward)(T* dx, const T* dy, const T* y, const T* factor, int N, int64_t M, int C, double lo,
                            double hi, bool accumulate);
  void (*shift_clip_forward)(T* y, const T* x, const T* delta, int N, int64_t S, double lo, double hi);
  void (*shift_clip_backward)(T* dx, const T* dy, const T* y, int64_t n, double lo, double hi, bool accumulate);
  void (*erase_boxes)(T* y, const T* x, const int32_t* boxes, int N, int H, int W, int C, double value,
                      bool accumulate);

  // LayerNormalization over the last axis (see layernorm.h).
  void (*layernorm_forward)(T* y, T* mean, T* invstd, const T* x, const T* gamma, const T* beta, int64_t M, int C,
                            double eps);
  void (*layernorm_backward)(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean, const T* invstd,
                             const T* gamma, int64_t M, int C, bool accumulate);

  // losses (see loss.h); count_correct: argmax match, or for K == 1 (pred > threshold) == (t > 0.5).
  double (*loss)(T* dpred, const T* pred, const T* target, int N, int K, const LossParams& p);
  int64_t (*count_correct)(const T* pred, const T* target, int N, int K, bool sparse, double threshold);
  // metrics as per-batch sums (see metric.h); logits: 0 none, 1 softmax, 2 sigmoid.
  // the training monitor's reductions over one range (see monitor.h).
  void (*tensor_stats)(double* out, const T* y, int64_t n);
  void (*param_norms)(double* out, const T* w, const T* g, const T* w0, int64_t n);
  void (*metric_sums)(double* out, const T* pred, const T* target, int N, int K, bool sparse, int logits,
                      const MetricSpec& s);

  // optimizers over flat buffers (see optim/optim.h).
  void (*sgd_update)(T* p, const T* g, T* buf, int64_t n, const SgdParams& h);
  void (*adam_update)(T* p, const T* g, T* m, T* v, int64_t n, const AdamParams& h);
  void (*adaptive_update)(T* p, const T* g, T* s0, T* s1, T* s2, int64_t n, const AdaptiveParams& h);
};

// The float table for the chosen capability, and for an explicit one (tests, benchmarks).
const KernelTable<float>& kernels_f32();
const KernelTable<float>& kernels_f32_for(CpuCapability c);
// The portable path in double precision: the oracle for gradient checks.
const KernelTable<double>& kernels_f64();

template <typename T> const KernelTable<T>& kernels();
template <> inline const KernelTable<float>& kernels<float>() { return kernels_f32(); }
template <> inline const KernelTable<double>& kernels<double>() { return kernels_f64(); }

namespace isa_baseline {
const KernelTable<float>* table_f32();
const KernelTable<double>* table_f64();
}  // namespace isa_baseline
namespace isa_avx2 {
const KernelTable<float>* table_f32();
// The AVX-512 kernels' tiling (16-float vectors) built for AVX2: tests run it where AVX-512 is absent.
const KernelTable<float>* table_f32_wide();
}  // namespace isa_avx2
namespace isa_avx512 { const KernelTable<float>* table_f32(); }
namespace isa_neon { const KernelTable<float>* table_f32(); }

}  // namespace cnnbp
