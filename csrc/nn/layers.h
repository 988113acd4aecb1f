// The layer families: conv2d (and its transpose), pool2d (max, average, global average), dense, flatten,
// activation (elementwise and softmax), dropout.
#pragma once
#include "nn/layer.h"

namespace cnnbp {

struct Conv2dConfig {
  int filters = 0, kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1;
  PadMode pad = PadMode::valid;
  int pt = 0, pb = 0, pl = 0, pr = 0;  // used when pad == explicit_
  bool use_bias = true;
  std::string kernel_init = "glorot_uniform", bias_init = "zeros";
  Act act = Act::linear;  // applied to the output in place (elementwise kinds only)
  double alpha = 0.0;
};

struct Pool2dConfig {
  bool max = true;
  int ph = 2, pw = 2, sh = 2, sw = 2;
  PadMode pad = PadMode::valid;
};

template <typename T>
std::unique_ptr<Layer<T>> make_conv2d(const std::string& name, const Shape& in, const Conv2dConfig& cfg);
// Grouped convolution (Conv2D(groups=G)) and, with depthwise, DepthwiseConv2D: filters = C *
// depth_multiplier, G = C, and the kernel shown as (kh, kw, C, depth_multiplier).
template <typename T>
std::unique_ptr<Layer<T>> make_grouped_conv2d(const std::string& name, const Shape& in, const Conv2dConfig& cfg,
                                              int groups, bool depthwise);
// Conv2DTranspose: cfg as for Conv2D (pad valid/same); output_padding -1 for Keras's default.
template <typename T>
std::unique_ptr<Layer<T>> make_conv2d_transpose(const std::string& name, const Shape& in, const Conv2dConfig& cfg,
                                                int oph, int opw);
template <typename T>
std::unique_ptr<Layer<T>> make_pool2d(const std::string& name, const Shape& in, const Pool2dConfig& cfg);
template <typename T>
std::unique_ptr<Layer<T>> make_global_avg_pool2d(const std::string& name, const Shape& in);
template <typename T>
std::unique_ptr<Layer<T>> make_global_max_pool2d(const std::string& name, const Shape& in);
template <typename T>
std::unique_ptr<Layer<T>> make_dense(const std::string& name, const Shape& in, int units, bool use_bias,
                                     const std::string& kernel_init, const std::string& bias_init,
                                     Act act = Act::linear, double alpha = 0.0);
template <typename T>
std::unique_ptr<Layer<T>> make_flatten(const std::string& name, const Shape& in);
template <typename T>
std::unique_ptr<Layer<T>> make_activation(const std::string& name, const Shape& in, Act kind, double alpha);
template <typename T>
std::unique_ptr<Layer<T>> make_dropout(const std::string& name, const Shape& in, double rate, uint64_t seed);

// Sets a one-input layer's name and shapes (sizes included).
template <typename T>
void set_shapes(Layer<T>& l, const std::string& name, const Shape& in, const Shape& out);
// Throws unless `in` is (height, width, channels).
void require_rank3(const std::string& name, const char* kind, const Shape& in);

// Activation kind of a layer made by make_activation, or -1 for any other layer.
template <typename T>
int activation_kind(const Layer<T>& l);

}  // namespace cnnbp
