// Optimizer updates over flat buffers (formulas in optim/optim.h): one pass, parallel over
// contiguous chunks; included per ISA like the kernels.

// p, g, buf: [n]
template <typename T>
static void sgd_update(T* p, const T* g, T* buf, int64_t n, const SgdParams& h) {
  const T lr = T(h.lr), mu = T(h.momentum), wd = T(h.weight_decay);
  const bool nesterov = h.nesterov, momentum = h.momentum != 0.0;
  parallel_for(n, kMinWork, [&](int64_t i0, int64_t i1, int) {
    if (!momentum) {
      for (int64_t i = i0; i < i1; ++i) p[i] -= lr * (g[i] + wd * p[i]);
      return;
    }
    for (int64_t i = i0; i < i1; ++i) {
      const T gi = g[i] + wd * p[i];
      const T b = mu * buf[i] + gi;
      buf[i] = b;
      p[i] -= lr * (nesterov ? gi + mu * b : b);
    }
  });
}

// p, g, m, v: [n]
template <typename T>
static void adam_update(T* p, const T* g, T* m, T* v, int64_t n, const AdamParams& h) {
  const double t = double(h.t);
  const T b1 = T(h.beta1), b2 = T(h.beta2), eps = T(h.eps);
  const T alpha = T(h.lr * __builtin_sqrt(1.0 - __builtin_pow(h.beta2, t)) / (1.0 - __builtin_pow(h.beta1, t)));
  const T decay = T(h.lr * h.weight_decay);
  parallel_for(n, kMinWork / 4, [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i) {
      T pi = p[i];
      if (decay != T(0)) pi -= decay * pi;
      const T gi = g[i];
      const T mi = b1 * m[i] + (T(1) - b1) * gi;
      const T vi = b2 * v[i] + (T(1) - b2) * gi * gi;
      m[i] = mi;
      v[i] = vi;
      p[i] = pi - alpha * mi / (k_sqrt(vi) + eps);
    }
  });
}
