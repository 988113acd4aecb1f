// Losses, portable path. Serial over rows: the batch is small next to the layers, and a serial
// sum in double gives the same loss for every thread count.

// pred, target, dpred: [N,K] (target [N] labels for the sparse kinds)
template <typename T>
static double loss(T* dpred, const T* pred, const T* target, int N, int K, const LossParams& lp) {
  const double eps = lp.eps;
  double total = 0.0;
  switch (lp.kind) {
    case LossKind::mse: {
      const double scale = 2.0 / (double(N) * K);
      for (int64_t i = 0; i < int64_t(N) * K; ++i) {
        const double d = double(pred[i]) - double(target[i]);
        total += d * d;
        if (dpred) dpred[i] = T(scale * d);
      }
      return total / (double(N) * K);
    }
    case LossKind::bce: {
      const double scale = 1.0 / (double(N) * K);
      for (int64_t i = 0; i < int64_t(N) * K; ++i) {
        const double p = double(pred[i]), t = double(target[i]);
        const double pc = p < eps ? eps : (p > 1.0 - eps ? 1.0 - eps : p);
        total -= t * __builtin_log(pc) + (1.0 - t) * __builtin_log(1.0 - pc);
        if (dpred) dpred[i] = (p > eps && p < 1.0 - eps) ? T(scale * (-t / p + (1.0 - t) / (1.0 - p))) : T(0);
      }
      return total * scale;
    }
    case LossKind::bce_logits: {
      const double scale = 1.0 / (double(N) * K);
      for (int64_t i = 0; i < int64_t(N) * K; ++i) {
        const double z = double(pred[i]), t = double(target[i]);
        total += (z > 0 ? z : 0.0) - z * t + __builtin_log1p(__builtin_exp(-__builtin_fabs(z)));
        if (dpred) {
          const double s = z >= 0 ? 1.0 / (1.0 + __builtin_exp(-z)) : __builtin_exp(z) / (1.0 + __builtin_exp(z));
          dpred[i] = T(scale * (s - t));
        }
      }
      return total * scale;
    }
    case LossKind::cce:
    case LossKind::sparse_cce: {
      const bool sparse = lp.kind == LossKind::sparse_cce;
      const double scale = 1.0 / double(N);
      for (int n = 0; n < N; ++n) {
        const T* pp = pred + int64_t(n) * K;
        T* dp = dpred ? dpred + int64_t(n) * K : nullptr;
        const int label = sparse ? int(target[n]) : -1;
        for (int k = 0; k < K; ++k) {
          const double t = sparse ? (k == label ? 1.0 : 0.0) : double(target[int64_t(n) * K + k]);
          const double p = double(pp[k]);
          const double pc = p < eps ? eps : (p > 1.0 - eps ? 1.0 - eps : p);
          if (t != 0.0) total -= t * __builtin_log(pc);
          if (dp) dp[k] = (p > eps && p < 1.0 - eps) ? T(-scale * t / p) : T(0);
        }
      }
      return total * scale;
    }
    case LossKind::softmax_ce:
    case LossKind::sparse_softmax_ce: {
      const bool sparse = lp.kind == LossKind::sparse_softmax_ce;
      const double scale = 1.0 / double(N);
      for (int n = 0; n < N; ++n) {
        const T* z = pred + int64_t(n) * K;
        T* dp = dpred ? dpred + int64_t(n) * K : nullptr;
        double m = double(z[0]);
        for (int k = 1; k < K; ++k) m = double(z[k]) > m ? double(z[k]) : m;
        double s = 0.0;
        for (int k = 0; k < K; ++k) s += __builtin_exp(double(z[k]) - m);
        const double lse = m + __builtin_log(s);
        if (sparse) {
          const int label = int(target[n]);
          total += lse - double(z[label]);
          if (dp)
            for (int k = 0; k < K; ++k)
              dp[k] = T(scale * (__builtin_exp(double(z[k]) - lse) - (k == label ? 1.0 : 0.0)));
        } else {
          const T* t = target + int64_t(n) * K;
          double tsum = 0.0;
          for (int k = 0; k < K; ++k) {
            tsum += double(t[k]);
            total += double(t[k]) * (lse - double(z[k]));
          }
          if (dp)
            for (int k = 0; k < K; ++k)
              dp[k] = T(scale * (tsum * __builtin_exp(double(z[k]) - lse) - double(t[k])));
        }
      }
      return total * scale;
    }
    case LossKind::mae:
    case LossKind::huber:
    case LossKind::log_cosh:
    case LossKind::poisson: {
      const double scale = 1.0 / (double(N) * K), delta = lp.delta;
      for (int64_t i = 0; i < int64_t(N) * K; ++i) {
        const double p = double(pred[i]), t = double(target[i]), e = p - t, ae = __builtin_fabs(e);
        double l, d;
        if (lp.kind == LossKind::mae) {
          l = ae;
          d = e > 0 ? 1.0 : (e < 0 ? -1.0 : 0.0);
        } else if (lp.kind == LossKind::huber) {
          l = ae <= delta ? 0.5 * e * e : delta * (ae - 0.5 * delta);
          d = ae <= delta ? e : (e > 0 ? delta : -delta);
        } else if (lp.kind == LossKind::log_cosh) {
          // log cosh e = |e| + log1p(exp(-2|e|)) - log 2 (no overflow for large |e|)
          l = ae + __builtin_log1p(__builtin_exp(-2.0 * ae)) - 0.69314718055994530942;
          d = __builtin_tanh(e);
        } else {
          l = p - t * __builtin_log(p + eps);
          d = 1.0 - t / (p + eps);
        }
        total += l;
        if (dpred) dpred[i] = T(scale * d);
      }
      return total * scale;
    }
    case LossKind::hinge:
    case LossKind::squared_hinge: {
      // Keras: when every target of the batch is 0 or 1, they are read as -1 / +1.
      bool binary = true;
      for (int64_t i = 0; i < int64_t(N) * K && binary; ++i) binary = target[i] == T(0) || target[i] == T(1);
      const bool squared = lp.kind == LossKind::squared_hinge;
      const double scale = 1.0 / (double(N) * K);
      for (int64_t i = 0; i < int64_t(N) * K; ++i) {
        const double t = binary ? 2.0 * double(target[i]) - 1.0 : double(target[i]);
        const double m = 1.0 - t * double(pred[i]);
        const double h = m > 0 ? m : 0.0;
        total += squared ? h * h : h;
        if (dpred) dpred[i] = T(scale * (m > 0 ? (squared ? -2.0 * h * t : -t) : 0.0));
      }
      return total * scale;
    }
    case LossKind::kld:
    case LossKind::categorical_hinge:
    case LossKind::cosine_similarity: {
      const double scale = 1.0 / double(N);
      for (int n = 0; n < N; ++n) {
        const T* pp = pred + int64_t(n) * K;
        const T* tt = target + int64_t(n) * K;
        T* dp = dpred ? dpred + int64_t(n) * K : nullptr;
        if (lp.kind == LossKind::kld) {
          for (int k = 0; k < K; ++k) {
            const double p = double(pp[k]), t = double(tt[k]);
            const double pc = p < eps ? eps : (p > 1.0 ? 1.0 : p), tc = t < eps ? eps : (t > 1.0 ? 1.0 : t);
            total += tc * __builtin_log(tc / pc);
            if (dp) dp[k] = (p > eps && p < 1.0) ? T(-scale * tc / p) : T(0);
          }
        } else if (lp.kind == LossKind::categorical_hinge) {
          double pos = 0.0, neg = 0.0;
          int arg = 0;
          for (int k = 0; k < K; ++k) {
            const double t = double(tt[k]), p = double(pp[k]), q = (1.0 - t) * p;
            pos += t * p;
            if (k == 0 || q > neg) {
              neg = q;
              arg = k;
            }
          }
          const double m = neg - pos + 1.0;
          total += m > 0 ? m : 0.0;
          if (dp)
            for (int k = 0; k < K; ++k)
              dp[k] = m > 0 ? T(scale * (-double(tt[k]) + (k == arg ? 1.0 - double(tt[k]) : 0.0))) : T(0);
        } else {
          double tt2 = 0.0, pp2 = 0.0, tp = 0.0;
          for (int k = 0; k < K; ++k) {
            tt2 += double(tt[k]) * double(tt[k]);
            pp2 += double(pp[k]) * double(pp[k]);
            tp += double(tt[k]) * double(pp[k]);
          }
          const bool pfloor = pp2 < 1e-12;
          const double nt = __builtin_sqrt(tt2 < 1e-12 ? 1e-12 : tt2), np = __builtin_sqrt(pfloor ? 1e-12 : pp2);
          const double c = tp / (nt * np);
          total -= c;
          // d(-t.p / (nt np)) / dp = -t / (nt np) + c p / np^2 (the second term only where |p| is not floored)
          if (dp)
            for (int k = 0; k < K; ++k)
              dp[k] = T(scale * (-double(tt[k]) / (nt * np) + (pfloor ? 0.0 : c * double(pp[k]) / pp2)));
        }
      }
      return total * scale;
    }
  }
  return total;
}

// pred, target: as loss(); returns the number of rows predicted right
template <typename T>
static int64_t count_correct(const T* pred, const T* target, int N, int K, bool sparse, double threshold) {
  int64_t correct = 0;
  for (int n = 0; n < N; ++n) {
    const T* pp = pred + int64_t(n) * K;
    if (K == 1) {
      const double t = sparse ? double(target[n]) : double(target[n]);
      correct += ((double(pp[0]) > threshold) == (t > 0.5)) ? 1 : 0;
      continue;
    }
    int best = 0;
    for (int k = 1; k < K; ++k) if (pp[k] > pp[best]) best = k;
    int truth;
    if (sparse) {
      truth = int(target[n]);
    } else {
      const T* t = target + int64_t(n) * K;
      truth = 0;
      for (int k = 1; k < K; ++k) if (t[k] > t[truth]) truth = k;
    }
    correct += best == truth ? 1 : 0;
  }
  return correct;
}
