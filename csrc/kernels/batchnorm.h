// batchnorm: batch normalisation over the last (channel) axis of a channels-last tensor, seen as
// rows of C values: x [M, C] with M = N*H*W (or N for a Dense output).
//   batchnorm_stats: per-channel batch mean and biased variance (the statistics Keras normalises
//     with and averages into its moving statistics), one pass over x (sums of x - x[0] and of its
//     square), partial sums in double over fixed blocks of rows added in block order (the same
//     bits on any thread count). An empty batch (M = 0) has statistics 0.
//   batchnorm_apply: y = x * scale[c] + shift[c] (training: scale = gamma*invstd, shift =
//     beta - mean*scale; inference: the same with the moving statistics), plus a residual tensor
//     when one is given (a BatchNormalization -> Add pair in one pass), optionally ReLU'd.
//   batchnorm_backward: the gradient through the batch statistics,
//     dx = gamma*invstd * (dy - sum(dy)/M - xhat * sum(dy*xhat)/M),  xhat = (x - mean)*invstd,
//     with dgamma = sum(dy*xhat) and dbeta = sum(dy) (each may be null: not wanted). After a
//     forward that fused ReLU, dy is first masked to where the output was positive (ReLU's
//     backward, fused): y > 0 when the output y is given, else x*rscale + rshift (+ radd, a
//     residual the forward added) > 0 with the forward's scale and shift (the same sign, bit
//     for bit, without keeping y). dres: the residual's gradient, the masked dy (the Add's).
#pragma once
