// Optimizer update rules over flat parameter / gradient buffers.
//
// SGD (as PyTorch, equal to Keras's form for a constant learning rate):
//   p -= decay * p                                      (decay = lr * weight_decay: Keras 3's decoupled form)
//   g' = g + coupled_weight_decay * p                   (PyTorch's SGD(weight_decay=): L2 in the gradient)
//   momentum == 0: p -= lr * g'
//   else:          buf = momentum * buf + g';  p -= lr * (nesterov ? g' + momentum * buf : buf)
// Adam (Keras's formula and defaults; AdamW adds decoupled weight decay first):
//   p -= lr * weight_decay * p                         (AdamW only)
//   m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
//   p -= alpha * m / (sqrt(v) + eps),   alpha = lr * sqrt(1 - b2^t) / (1 - b1^t)
// The adaptive family (Keras's formulas and defaults; t is the 1-based step; weight_decay is
// decoupled as in Keras: p -= lr * weight_decay * p first):
//   RMSprop:  v = rho v + (1 - rho) g^2;  centered: a = rho a + (1 - rho) g, den = v - a^2 + eps,
//             else den = v + eps;  inc = lr g / sqrt(den);  momentum: b = momentum b + inc, p -= b;
//             else p -= inc                                             slots v [, b] [, a]
//   Adagrad:  s += g^2;  p -= lr g / sqrt(s + eps)        (s starts at initial_accumulator_value)
//   Adadelta: s = rho s + (1 - rho) g^2;  d = -sqrt(u + eps) / sqrt(s + eps) * g;
//             u = rho u + (1 - rho) d^2;  p += lr d                     slots s, u
//   Adamax:   m = b1 m + (1 - b1) g;  u = max(b2 u, |g|);  p -= lr m / ((1 - b1^t)(u + eps))
//   Nadam:    mu_t = b1 (1 - 0.5 * 0.96^t);  P_t = mu_1 ... mu_t;
//             m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//             m^ = mu_{t+1} m / (1 - P_t mu_{t+1}) + (1 - mu_t) g / (1 - P_t);  v^ = v / (1 - b2^t)
//             p -= lr m^ / (sqrt(v^) + eps)
//   Lion:     p -= lr sign(b1 m + (1 - b1) g);  m = b2 m + (1 - b2) g
#pragma once
#include <cstdint>

namespace cnnbp {

enum class OptKind : int { sgd = 0, adam = 1, rmsprop = 2, adagrad = 3, adadelta = 4, adamax = 5, nadam = 6, lion = 7 };

struct SgdParams {
  double lr, momentum, weight_decay;  // weight_decay: the coupled (L2) form
  bool nesterov;
  double decay;                       // lr * the decoupled weight decay
};

struct AdamParams {
  double lr, beta1, beta2, eps, weight_decay;  // weight_decay: decoupled (AdamW); 0 for Adam
  int64_t t;                                   // 1-based step number
};

// One step of the adaptive family: the scalars that depend only on the step are worked out once
// in double by the caller (Network::apply_update).
struct AdaptiveParams {
  OptKind kind;
  double lr, decay;     // decay = lr * weight_decay (decoupled)
  double beta1, beta2, rho, eps, momentum;
  bool centered;
  double c1, c2, c3;    // Adamax: c1 = lr / (1 - b1^t).  Nadam: c1 = mu_{t+1} / (1 - P_t mu_{t+1}),
                        // c2 = (1 - mu_t) / (1 - P_t), c3 = 1 / (1 - b2^t)
};

}  // namespace cnnbp
