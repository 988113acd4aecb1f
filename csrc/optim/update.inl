// Optimizer updates over flat buffers (formulas in optim/optim.h): one pass, parallel over
// contiguous chunks; included per ISA like the kernels. The chunk lambdas take their constants and
// pointers by value into restrict locals: captured by reference, each constant was reloaded after
// every store (it might alias p[i]) and the loops ran scalar (Adam: 3 ns per parameter).

// p, g, buf: [n]
template <typename T>
static void sgd_update(T* p_, const T* g_, T* buf_, int64_t n, const SgdParams& h) {
  const T lr = T(h.lr), mu = T(h.momentum), wd = T(h.weight_decay), decay = T(h.decay);
  const bool nesterov = h.nesterov, momentum = h.momentum != 0.0;
  const bool decays = h.decay != 0.0;
  parallel_for(n, kMinWork, [=](int64_t i0, int64_t i1, int) {
    T* __restrict p = p_;
    const T* __restrict g = g_;
    T* __restrict buf = buf_;
    if (decays)
      for (int64_t i = i0; i < i1; ++i) p[i] -= decay * p[i];
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
static void adam_update(T* p_, const T* g_, T* m_, T* v_, int64_t n, const AdamParams& h) {
  const double t = double(h.t);
  const T b1 = T(h.beta1), b2 = T(h.beta2), eps = T(h.eps);
  const T alpha = T(h.lr * __builtin_sqrt(1.0 - __builtin_pow(h.beta2, t)) / (1.0 - __builtin_pow(h.beta1, t)));
  const T decay = T(h.lr * h.weight_decay);
  parallel_for(n, kMinWork / 4, [=](int64_t i0, int64_t i1, int) {
    T* __restrict p = p_;
    const T* __restrict g = g_;
    T* __restrict m = m_;
    T* __restrict v = v_;
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

// p, g, s0, s1, s2: [n]; the slots each kind uses are listed in optim/optim.h (unused ones null).
template <typename T>
static void adaptive_update(T* p_, const T* g_, T* s0_, T* s1_, T* s2_, int64_t n, const AdaptiveParams& h) {
  const T lr = T(h.lr), decay = T(h.decay), b1 = T(h.beta1), b2 = T(h.beta2), rho = T(h.rho), eps = T(h.eps);
  const T c1 = T(h.c1), c2 = T(h.c2), c3 = T(h.c3), mom = T(h.momentum);
  const OptKind kind = h.kind;
  const bool centered = h.centered, use_mom = h.momentum > 0;
  parallel_for(n, kMinWork / 4, [=](int64_t i0, int64_t i1, int) {
    T* __restrict p = p_;
    const T* __restrict g = g_;
    T* __restrict s0 = s0_;
    T* __restrict s1 = s1_;
    T* __restrict s2 = s2_;  // s2 == s1 (centered RMSprop without momentum): s1 is then never read
    if (decay != T(0))
      for (int64_t i = i0; i < i1; ++i) p[i] -= decay * p[i];
    switch (kind) {
      case OptKind::rmsprop:
        for (int64_t i = i0; i < i1; ++i) {
          const T gi = g[i];
          const T v = rho * s0[i] + (T(1) - rho) * gi * gi;
          s0[i] = v;
          T den = v + eps;
          if (centered) {
            const T a = rho * s2[i] + (T(1) - rho) * gi;
            s2[i] = a;
            den = v - a * a + eps;
          }
          const T inc = lr * gi / k_sqrt(den);
          if (use_mom) {
            const T b = mom * s1[i] + inc;
            s1[i] = b;
            p[i] -= b;
          } else {
            p[i] -= inc;
          }
        }
        break;
      case OptKind::adagrad:
        for (int64_t i = i0; i < i1; ++i) {
          const T gi = g[i];
          const T s = s0[i] + gi * gi;
          s0[i] = s;
          p[i] -= lr * gi / k_sqrt(s + eps);
        }
        break;
      case OptKind::adadelta:
        for (int64_t i = i0; i < i1; ++i) {
          const T gi = g[i];
          const T s = rho * s0[i] + (T(1) - rho) * gi * gi;
          s0[i] = s;
          const T d = -k_sqrt(s1[i] + eps) / k_sqrt(s + eps) * gi;
          s1[i] = rho * s1[i] + (T(1) - rho) * d * d;
          p[i] += lr * d;
        }
        break;
      case OptKind::adamax:
        for (int64_t i = i0; i < i1; ++i) {
          const T gi = g[i];
          const T m = b1 * s0[i] + (T(1) - b1) * gi;
          const T bu = b2 * s1[i], ag = gi < T(0) ? -gi : gi;
          const T u = bu > ag ? bu : ag;
          s0[i] = m;
          s1[i] = u;
          p[i] -= c1 * m / (u + eps);
        }
        break;
      case OptKind::nadam:
        for (int64_t i = i0; i < i1; ++i) {
          const T gi = g[i];
          const T m = b1 * s0[i] + (T(1) - b1) * gi;
          const T v = b2 * s1[i] + (T(1) - b2) * gi * gi;
          s0[i] = m;
          s1[i] = v;
          const T mh = c1 * m + c2 * gi;
          p[i] -= lr * mh / (k_sqrt(v * c3) + eps);
        }
        break;
      case OptKind::lion:
        for (int64_t i = i0; i < i1; ++i) {
          const T gi = g[i];
          const T c = b1 * s0[i] + (T(1) - b1) * gi;
          p[i] -= c > T(0) ? lr : (c < T(0) ? -lr : T(0));
          s0[i] = b2 * s0[i] + (T(1) - b2) * gi;
        }
        break;
      default:
        break;
    }
  });
}
