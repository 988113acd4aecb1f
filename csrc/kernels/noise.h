// noise: the kernels of SpatialDropout2D and GaussianNoise (Dropout's are in activation.h). Every
// draw is a pure function of (seed, stream, index), as dropout's.
//   channel_mask:   mask[i] = uniform(seed, stream, i) >= rate ? 1 / (1 - rate) : 0, i < n
//                   (one per (sample, channel) for SpatialDropout2D)
//   scale_channels: y[n, m, c] = x[n, m, c] * mask[n, c] over N samples of M rows of C channels
//                   (forward and backward alike)
//   gaussian_noise: y[i] = x[i] + stddev * normal(seed, stream, i)
#pragma once

namespace cnnbp {}  // the kernels are in the KernelTable (kernels.h)
