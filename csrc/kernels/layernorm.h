// layernorm: LayerNormalization over the last axis of [M, C] rows (Keras's axis=-1):
//   forward  y = (x - mean_r) * invstd_r * gamma + beta, mean and biased variance per row in
//            double, invstd = 1 / sqrt(var + eps); mean_r and invstd_r are kept for backward
//   backward g = dy * gamma;  dx = invstd * (g - mean_c(g) - xhat * mean_c(g * xhat))
//            dgamma = sum_r dy * xhat, dbeta = sum_r dy (null: not wanted); accumulate adds into dx
#pragma once

namespace cnnbp {}  // the kernels are in the KernelTable (kernels.h)
