// Metrics (metric.h), portable path for every ISA: serial in double over rows, like the loss, so
// the sums do not depend on the thread count. No allocation: a softmax row is recomputed per use.

// pred, target: [N,K] (target [N] labels when sparse); out: metric_size(s, K) doubles, added to
template <typename T>
static void metric_sums(double* out, const T* pred, const T* target, int N, int K, bool sparse, int logits,
                        const MetricSpec& s) {
  for (int n = 0; n < N; ++n) {
    const T* z = pred + int64_t(n) * K;
    const T* t = sparse ? nullptr : target + int64_t(n) * K;
    const int label = sparse ? int(target[n]) : -1;
    auto truth = [&](int k) { return sparse ? (k == label ? 1.0 : 0.0) : double(t[k]); };
    double lse = 0.0;
    if (logits == 1) {
      double m = double(z[0]);
      for (int k = 1; k < K; ++k) m = double(z[k]) > m ? double(z[k]) : m;
      double sum = 0.0;
      for (int k = 0; k < K; ++k) sum += __builtin_exp(double(z[k]) - m);
      lse = m + __builtin_log(sum);
    }
    auto prob = [&](int k) {
      const double v = double(z[k]);
      if (logits == 1) return __builtin_exp(v - lse);
      if (logits == 2) return v >= 0 ? 1.0 / (1.0 + __builtin_exp(-v)) : __builtin_exp(v) / (1.0 + __builtin_exp(v));
      return v;
    };
    auto argmax_pred = [&] {
      int b = 0;
      for (int k = 1; k < K; ++k) if (z[k] > z[b]) b = k;
      return b;
    };
    auto argmax_true = [&] {
      if (sparse) return label;
      int b = 0;
      for (int k = 1; k < K; ++k) if (t[k] > t[b]) b = k;
      return b;
    };
    switch (s.kind) {
      case MetricKind::accuracy:
        if (K == 1) out[0] += ((prob(0) > s.threshold) == (truth(0) > 0.5)) ? 1.0 : 0.0;
        else out[0] += argmax_pred() == argmax_true() ? 1.0 : 0.0;
        break;
      case MetricKind::binary_accuracy: {
        int right = 0;
        for (int k = 0; k < K; ++k) right += ((prob(k) > s.threshold) == (truth(k) > 0.5)) ? 1 : 0;
        out[0] += double(right) / K;
        break;
      }
      case MetricKind::categorical_accuracy:
        out[0] += argmax_pred() == argmax_true() ? 1.0 : 0.0;
        break;
      case MetricKind::top_k: {
        const int c = argmax_true();
        int above = 0;
        for (int k = 0; k < K; ++k) above += z[k] > z[c] ? 1 : 0;
        out[0] += above < s.k ? 1.0 : 0.0;
        break;
      }
      case MetricKind::mae:
      case MetricKind::mse: {
        double e = 0.0;
        for (int k = 0; k < K; ++k) {
          const double d = prob(k) - truth(k);
          e += s.kind == MetricKind::mae ? __builtin_fabs(d) : d * d;
        }
        out[0] += e / K;
        break;
      }
      case MetricKind::confusion: {
        const int k0 = s.class_id >= 0 ? s.class_id : 0, k1 = s.class_id >= 0 ? s.class_id + 1 : K;
        for (int k = k0; k < k1; ++k) {
          const bool p = prob(k) > s.threshold, y = truth(k) > 0.5;
          out[0] += (p && y) ? 1.0 : 0.0;
          out[1] += (p && !y) ? 1.0 : 0.0;
          out[2] += (!p && y) ? 1.0 : 0.0;
        }
        break;
      }
      case MetricKind::per_class: {
        const int best = s.threshold < 0 ? argmax_pred() : -1;
        for (int k = 0; k < K; ++k) {
          const bool p = s.threshold < 0 ? k == best : prob(k) > s.threshold, y = truth(k) > 0.5;
          out[3 * k] += (p && y) ? 1.0 : 0.0;
          out[3 * k + 1] += (p && !y) ? 1.0 : 0.0;
          out[3 * k + 2] += (!p && y) ? 1.0 : 0.0;
        }
        break;
      }
      case MetricKind::auc: {
        // Keras's thresholds: -1e-7, 1/(B-1), ..., (B-2)/(B-1), 1 + 1e-7; a prediction counts as
        // positive at each threshold below it. j = how many thresholds lie below p, in [0, B].
        const int B = s.bins;
        for (int k = 0; k < K; ++k) {
          const double p = prob(k);
          int j;
          if (!(p > -1e-7)) {
            j = 0;
          } else {
            double c = __builtin_ceil(p * (B - 1)) - 1.0;  // interior thresholds i/(B-1) < p, i in 1..B-2
            int i = c < 0 ? 0 : (c > B - 2 ? B - 2 : int(c));
            while (i > 0 && !(double(i) / (B - 1) < p)) --i;
            while (i < B - 2 && double(i + 1) / (B - 1) < p) ++i;
            j = 1 + i + (p > 1.0 + 1e-7 ? 1 : 0);
          }
          out[(truth(k) > 0.5 ? 0 : B + 1) + j] += 1.0;
        }
        break;
      }
    }
  }
}
