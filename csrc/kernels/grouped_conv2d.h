// grouped_conv2d: a convolution whose C input and K output channels split into G groups, output
// group g reading input group g only; NHWC activations, weights [R,S,C/G,K] (Keras's layout for
// Conv2D(groups=G)). Depthwise convolution is G = C: weights [R,S,1,C*m], the same memory as
// Keras's depthwise kernel [R,S,C,m] (output channel c*m + j reads input channel c).
//   grouped_conv2d_forward         y  = conv(x, w) + b      (b may be null)
//   grouped_conv2d_backward_data   dx = conv_transpose(dy, w)   (or dx += ..., accumulate)
//   grouped_conv2d_backward_weight dw = corr(x, dy)         (the bias gradient: channel_bias_grad)
// The geometry is a Conv2dParams (C and K the full channel counts) plus G.
#pragma once
#include "kernels/conv2d.h"
