// Compiled once per ISA (CMake object libraries k_baseline, k_avx2 and k_avx512 on x86-64,
// k_baseline and k_neon on aarch64), each time with CNNBP_ISA_NS set to isa_<name> and that
// ISA's compiler flags. Everything except the exported
// table lives in an anonymous namespace, so no instantiation can leak from one ISA's object into
// another's (each weak symbol would otherwise be merged by the linker, ISA flags and all).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "core/parallel.h"
#include "core/random.h"
#include "kernels/bf16.h"
#include "kernels/kernels.h"

#ifndef CNNBP_ISA_NS
#error "kernels_isa.cpp is compiled by CMake with CNNBP_ISA_NS defined"
#endif

namespace cnnbp {
namespace CNNBP_ISA_NS {
namespace {

#include "kernels/ref/common.inl"
#include "kernels/ref/activation.inl"
#include "kernels/ref/augment.inl"
#include "kernels/ref/batchnorm.inl"
#include "kernels/ref/bf16.inl"
#include "kernels/ref/conv2d.inl"
#include "kernels/ref/dense.inl"
#include "kernels/ref/grouped_conv2d.inl"
#include "kernels/ref/layernorm.inl"
#include "kernels/ref/loss.inl"
#include "kernels/ref/merge.inl"
#include "kernels/ref/metric.inl"
#include "kernels/ref/monitor.inl"
#include "kernels/ref/noise.inl"
#include "kernels/ref/pool2d.inl"
#include "kernels/ref/resize.inl"
#include "optim/update.inl"
#ifndef CNNBP_ISA_BASELINE
#include "kernels/simd/vec.inl"
#include "kernels/simd/conv2d.inl"
#include "kernels/simd/winograd.inl"
#include "kernels/simd/dense.inl"
#endif

#define CNNBP_STR2(x) #x
#define CNNBP_STR(x) CNNBP_STR2(x)

// constexpr: the tables are constant-initialised data. A dynamic initialiser compiled with AVX-512
// flags would run at import on every CPU, and the compiler may use AVX-512 for it.
// VL = 0: the portable templates (baseline float, and double everywhere); VL > 0: the
// register-blocked float kernels with VL-float vectors.
template <typename T, int VL>
constexpr KernelTable<T> make_table() {
  KernelTable<T> t{};
  t.isa = CNNBP_STR(CNNBP_ISA_NS);
  t.conv2d_workspace = conv2d_workspace;
  t.conv2d_forward = conv2d_forward<T>;
  t.conv2d_backward_data = conv2d_backward_data<T>;
  t.conv2d_backward_weight = conv2d_backward_weight<T>;
  t.conv2d_algorithm = conv2d_algorithm_direct;
  t.max_pool2d_forward = max_pool2d_forward<T>;
  t.max_pool2d_backward = max_pool2d_backward<T>;
  t.avg_pool2d_forward = avg_pool2d_forward<T>;
  t.avg_pool2d_backward = avg_pool2d_backward<T>;
  t.global_avg_pool2d_forward = global_avg_pool2d_forward<T>;
  t.global_avg_pool2d_backward = global_avg_pool2d_backward<T>;
  t.global_max_pool2d_forward = global_max_pool2d_forward<T>;
  t.global_max_pool2d_backward = global_max_pool2d_backward<T>;
  t.batchnorm_workspace = batchnorm_workspace<T>;
  t.batchnorm_stats = batchnorm_stats<T>;
  t.batchnorm_apply = batchnorm_apply<T>;
  t.batchnorm_backward = batchnorm_backward<T>;
  t.merge_forward = merge_forward<T>;
  t.merge_backward = merge_backward<T>;
  t.concat_forward = concat_forward<T>;
  t.concat_backward = concat_backward<T>;
  t.window_to_small = window_to_small<T>;
  t.window_to_big = window_to_big<T>;
  t.add_into = add_into<T>;
  t.round_bf16 = round_bf16<T>;
  t.dense_workspace = dense_workspace;
  t.dense_forward = dense_forward<T>;
  t.dense_backward_data = dense_backward_data<T>;
  t.dense_backward_weight = dense_backward_weight<T>;
  t.activation_forward = activation_forward<T>;
  t.activation_backward = activation_backward<T>;
  t.softmax_forward = softmax_forward<T>;
  t.softmax_backward = softmax_backward<T>;
  t.dropout_forward = dropout_forward<T>;
  t.dropout_backward = dropout_backward<T>;
  t.loss = loss<T>;
  t.count_correct = count_correct<T>;
  t.permute = permute<T>;
  t.prelu_forward = prelu_forward<T>;
  t.prelu_backward = prelu_backward<T>;
  t.channel_mask = channel_mask<T>;
  t.scale_channels = scale_channels<T>;
  t.gaussian_noise = gaussian_noise<T>;
  t.warp_forward = warp_forward<T>;
  t.warp_backward = warp_backward<T>;
  t.contrast_forward = contrast_forward<T>;
  t.contrast_backward = contrast_backward<T>;
  t.shift_clip_forward = shift_clip_forward<T>;
  t.shift_clip_backward = shift_clip_backward<T>;
  t.erase_boxes = erase_boxes<T>;
  t.layernorm_forward = layernorm_forward<T>;
  t.layernorm_backward = layernorm_backward<T>;
  t.grouped_conv2d_forward = grouped_conv2d_forward<T>;
  t.grouped_conv2d_backward_data = grouped_conv2d_backward_data<T>;
  t.grouped_conv2d_backward_weight = grouped_conv2d_backward_weight<T>;
  t.channel_bias_add = channel_bias_add<T>;
  t.channel_bias_grad = channel_bias_grad<T>;
  t.resize_forward = resize_forward<T>;
  t.resize_backward = resize_backward<T>;
  t.metric_sums = metric_sums<T>;
  t.tensor_stats = tensor_stats<T>;
  t.param_norms = param_norms<T>;
  t.sgd_update = sgd_update<T>;
  t.adam_update = adam_update<T>;
  t.adaptive_update = adaptive_update<T>;
#ifndef CNNBP_ISA_BASELINE
  if constexpr (VL > 0 && std::is_same<T, float>::value) {
    t.conv2d_workspace = conv2d_workspace_algo<VL>;
    t.conv2d_forward = conv2d_forward_algo<VL>;
    t.conv2d_backward_data = conv2d_backward_data_algo<VL>;
    t.conv2d_backward_weight = conv2d_backward_weight_algo<VL>;
    t.conv2d_algorithm = conv_algo_for<VL>;
    t.conv2d_prologue_ok = conv2d_prologue_ok_algo<VL>;
    t.conv2d_forward_pre = conv2d_forward_pre_algo<VL>;
    t.conv2d_backward_weight_pre = conv2d_backward_weight_pre_algo<VL>;
    t.dense_workspace = dense_ws<VL>;
    t.dense_forward = dense_forward_blocked<VL>;
    t.dense_backward_data = dense_backward_data_blocked<VL>;
    t.dense_backward_weight = dense_backward_weight_blocked<VL>;
  }
#endif
  return t;
}

#if defined(CNNBP_ISA_BASELINE)
constexpr KernelTable<float> kTableF32 = make_table<float, 0>();
constexpr KernelTable<double> kTableF64 = make_table<double, 0>();
#elif defined(__aarch64__)
constexpr KernelTable<float> kTableF32 = make_table<float, 4>();
#elif defined(__AVX512F__)
constexpr KernelTable<float> kTableF32 = make_table<float, 16>();
#else
constexpr KernelTable<float> kTableF32 = make_table<float, 8>();
constexpr KernelTable<float> kTableWide = make_table<float, 16>();
#endif

}  // namespace

const KernelTable<float>* table_f32() { return &kTableF32; }
#if defined(CNNBP_ISA_BASELINE)
const KernelTable<double>* table_f64() { return &kTableF64; }
#elif !defined(__AVX512F__) && !defined(__aarch64__)
const KernelTable<float>* table_f32_wide() { return &kTableWide; }
#endif

}  // namespace CNNBP_ISA_NS
}  // namespace cnnbp
