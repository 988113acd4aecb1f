// Losses over a [N,K] prediction and a target that is either [N,K] (dense, one-hot or soft) or
// [N] integer class labels (sparse kinds). Each returns the mean loss over the batch, computed in
// double in a fixed order, and writes d(mean loss)/d(pred) when dpred is not null.
#pragma once

namespace cnnbp {

enum class LossKind : int {
  mse = 0,                 // mean((p - t)^2) over all N*K elements
  bce = 1,                 // binary cross-entropy on probabilities (clipped to [eps, 1-eps])
  bce_logits = 2,          // binary cross-entropy from logits, stable form
  cce = 3,                 // -sum_k t_k log p_k on probabilities, mean over N
  sparse_cce = 4,          // -log p_label on probabilities
  softmax_ce = 5,          // softmax + categorical cross-entropy from logits (fused, stable)
  sparse_softmax_ce = 6,   // softmax + sparse cross-entropy from logits
};

static inline bool loss_is_sparse(LossKind k) {
  return k == LossKind::sparse_cce || k == LossKind::sparse_softmax_ce;
}

struct LossParams {
  LossKind kind;
  double eps;  // clipping for the probability forms (Keras: 1e-7)
};

}  // namespace cnnbp
