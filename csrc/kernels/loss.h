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
  // Keras's other losses; e = p - t, means over all N*K elements unless "per row" (then mean over N):
  mae = 7,                 // |e|
  huber = 8,               // 0.5 e^2 if |e| <= delta, else delta (|e| - 0.5 delta)
  log_cosh = 9,            // log(cosh(e)), as e + softplus(-2e) - log 2
  kld = 10,                // per row sum t' log(t' / p'), t' and p' clipped to [eps, 1]
  hinge = 11,              // max(1 - t p, 0); targets all in {0, 1} (per batch) become {-1, 1}
  squared_hinge = 12,      // max(1 - t p, 0)^2, same targets
  categorical_hinge = 13,  // per row max(max_k (1 - t_k) p_k - sum_k t_k p_k + 1, 0)
  poisson = 14,            // p - t log(p + eps)
  cosine_similarity = 15,  // per row -(t / |t|) . (p / |p|), |x| = sqrt(max(sum x^2, 1e-12))
};
constexpr int kLossKinds = 16;

// The names of the kinds, in enum order (the Python side selects a kind by name).
constexpr const char* kLossNames[kLossKinds] = {
    "mean_squared_error", "binary_crossentropy", "binary_crossentropy_from_logits", "categorical_crossentropy",
    "sparse_categorical_crossentropy", "categorical_crossentropy_from_logits",
    "sparse_categorical_crossentropy_from_logits", "mean_absolute_error", "huber", "log_cosh",
    "kl_divergence", "hinge", "squared_hinge", "categorical_hinge", "poisson", "cosine_similarity"};

static inline bool loss_is_sparse(LossKind k) {
  return k == LossKind::sparse_cce || k == LossKind::sparse_softmax_ce;
}

struct LossParams {
  LossKind kind;
  double eps;  // clipping for the probability forms (Keras: 1e-7)
  double delta = 1.0;  // Huber's threshold
};

}  // namespace cnnbp
