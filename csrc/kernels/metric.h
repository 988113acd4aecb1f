// Metrics as per-batch sums: each kind adds this batch's counts into its slice of a double array;
// the Python side (cnnbp.metrics) turns the epoch's totals into the value Keras reports.
// pred [N,K] is the network's output: probabilities, or logits when the loss was fused (then
// `logits` says how to turn them into probabilities: 1 softmax over K, 2 sigmoid per element).
#pragma once
#include <cstdint>

namespace cnnbp {

enum class MetricKind : int {
  accuracy = 0,         // 1 sum: rows right (argmax, or K == 1: pred > threshold vs t > 0.5), as Keras's 'accuracy'
  binary_accuracy = 1,  // 1: per row the fraction of elements with (p > threshold) == (t > 0.5)
  categorical_accuracy = 2,  // 1: argmax p == argmax t (or the label, sparse targets)
  top_k = 3,            // 1: fewer than k classes score above the true one
  mae = 4,              // 1: per row mean |p - t|
  mse = 5,              // 1: per row mean (p - t)^2
  confusion = 6,        // 3: TP, FP, FN of (p > threshold) against (t > 0.5), every element or class_id's column
  per_class = 7,        // 3K: TP, FP, FN per class; the prediction is argmax p (threshold < 0) or p > threshold
  auc = 8,              // 2(bins + 1): how many Keras thresholds lie below each prediction, for positives then negatives
};
constexpr int kMetricKinds = 9;

struct MetricSpec {
  MetricKind kind = MetricKind::accuracy;
  int k = 5;               // top_k
  double threshold = 0.5;  // binary decisions (compared with probabilities)
  int class_id = -1;       // confusion: one class's column (-1: every element)
  int bins = 200;          // auc: Keras's num_thresholds
};

// Doubles a metric adds to, for K outputs.
inline int64_t metric_size(const MetricSpec& s, int K) {
  switch (s.kind) {
    case MetricKind::confusion: return 3;
    case MetricKind::per_class: return 3 * int64_t(K);
    case MetricKind::auc: return 2 * (int64_t(s.bins) + 1);
    default: return 1;
  }
}

}  // namespace cnnbp
