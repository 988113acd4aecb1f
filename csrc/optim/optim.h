// Optimizer update rules over flat parameter / gradient buffers.
//
// SGD (as PyTorch, equal to Keras's form for a constant learning rate):
//   g' = g + weight_decay * p
//   momentum == 0: p -= lr * g'
//   else:          buf = momentum * buf + g';  p -= lr * (nesterov ? g' + momentum * buf : buf)
// Adam (Keras's formula and defaults; AdamW adds decoupled weight decay first):
//   p -= lr * weight_decay * p                         (AdamW only)
//   m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
//   p -= alpha * m / (sqrt(v) + eps),   alpha = lr * sqrt(1 - b2^t) / (1 - b1^t)
#pragma once
#include <cstdint>

namespace cnnbp {

enum class OptKind : int { sgd = 0, adam = 1 };

struct SgdParams {
  double lr, momentum, weight_decay;
  bool nesterov;
};

struct AdamParams {
  double lr, beta1, beta2, eps, weight_decay;  // weight_decay: decoupled (AdamW); 0 for Adam
  int64_t t;                                   // 1-based step number
};

}  // namespace cnnbp
