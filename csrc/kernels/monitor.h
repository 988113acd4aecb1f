// monitor: the training monitor's reductions (Network::monitor_*), run on the calling thread over
// one contiguous range; the network splits a tensor over its threads. Sums are taken in the
// element type over lanes of 64 elements and carried in double from block to block (relative
// error about 1e-7 in float32); counts are exact.
//   tensor_stats: out[0..5] = elements, sum, sum of squares, exact zeros, |y| <= 0.01, |y| >= 0.99
//   param_norms:  out[0..2] = |w|^2, |g|^2, |w - w0|^2
#pragma once
#include <cstdint>
