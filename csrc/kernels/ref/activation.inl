// Activations, portable path: elementwise, parallel over contiguous chunks.

template <typename T>
static inline T sigmoid_of(T v) {
  if (v >= T(0)) return T(1) / (T(1) + k_exp(-v));
  const T e = k_exp(v);
  return e / (T(1) + e);
}

// x, y: [n]
template <typename T>
static void activation_forward(T* y, const T* x, int64_t n, Act kind, T alpha_in) {
  parallel_for(n, kMinWork, [&](int64_t i0, int64_t i1, int) {
    // A local copy: read through the captured reference, alpha could alias y for the compiler,
    // which then reloads it every iteration and does not vectorise the loop.
    const T alpha = alpha_in;
    switch (kind) {
      case Act::relu:
        // Written so that NaN propagates (NaN < 0 is false), as PyTorch's relu.
        for (int64_t i = i0; i < i1; ++i) y[i] = x[i] < T(0) ? T(0) : x[i];
        break;
      case Act::leaky_relu:
        for (int64_t i = i0; i < i1; ++i) y[i] = x[i] * (x[i] < T(0) ? alpha : T(1));
        break;
      case Act::sigmoid:
        for (int64_t i = i0; i < i1; ++i) y[i] = sigmoid_of(x[i]);
        break;
      case Act::tanh:
        for (int64_t i = i0; i < i1; ++i) y[i] = k_tanh(x[i]);
        break;
      case Act::elu:
      case Act::selu: {
        const bool se = kind == Act::selu;
        const T a = se ? T(1.6732632423543772) : alpha, s = se ? T(1.0507009873554805) : T(1);
        for (int64_t i = i0; i < i1; ++i) y[i] = s * (x[i] > T(0) ? x[i] : a * (k_exp(x[i]) - T(1)));
        break;
      }
      case Act::gelu:
        for (int64_t i = i0; i < i1; ++i) y[i] = T(0.5) * x[i] * (T(1) + k_erf(x[i] * T(0.70710678118654752)));
        break;
      case Act::swish:
        for (int64_t i = i0; i < i1; ++i) y[i] = x[i] * sigmoid_of(x[i]);
        break;
      case Act::softplus:
        // max(x, 0) + log1p(e^-|x|): no overflow for large |x|
        for (int64_t i = i0; i < i1; ++i) y[i] = (x[i] > T(0) ? x[i] : T(0)) + k_log1p(k_exp(-k_fabs(x[i])));
        break;
      case Act::hard_sigmoid:
        for (int64_t i = i0; i < i1; ++i) {
          const T v = x[i] / T(6) + T(0.5);
          y[i] = v < T(0) ? T(0) : (v > T(1) ? T(1) : v);
        }
        break;
      case Act::relu_max:
        for (int64_t i = i0; i < i1; ++i) y[i] = x[i] < T(0) ? T(0) : (x[i] > alpha ? alpha : x[i]);
        break;
      default:
        for (int64_t i = i0; i < i1; ++i) y[i] = x[i];
    }
  });
}

// dy, x, y, dx: [n]; dx may be dy (in place). One small loop per kind, each with an unconditional
// multiply, so every loop vectorises.
template <typename T>
static void relu_backward(T* dx, const T* dy, const T* x, int64_t i0, int64_t i1, T slope) {
  // The multiply is unconditional: a conditional one is not if-converted (it could trap).
  for (int64_t i = i0; i < i1; ++i) dx[i] = dy[i] * (x[i] > T(0) ? T(1) : slope);
}
template <typename T>
static void sigmoid_backward(T* dx, const T* dy, const T* y, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) dx[i] = dy[i] * y[i] * (T(1) - y[i]);
}
template <typename T>
static void tanh_backward(T* dx, const T* dy, const T* y, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) dx[i] = dy[i] * (T(1) - y[i] * y[i]);
}

template <typename T>
static void activation_backward(T* dx, const T* dy, const T* x, const T* y, int64_t n, Act kind, T alpha_in) {
  parallel_for(n, kMinWork, [&](int64_t i0, int64_t i1, int) {
    const T alpha = alpha_in;  // a local copy (see activation_forward)
    switch (kind) {
      case Act::relu: relu_backward(dx, dy, x, i0, i1, T(0)); break;
      case Act::leaky_relu: relu_backward(dx, dy, x, i0, i1, alpha); break;
      case Act::sigmoid: sigmoid_backward(dx, dy, y, i0, i1); break;
      case Act::tanh: tanh_backward(dx, dy, y, i0, i1); break;
      case Act::elu:
      case Act::selu: {
        const bool se = kind == Act::selu;
        const T a = se ? T(1.6732632423543772) : alpha, s = se ? T(1.0507009873554805) : T(1);
        for (int64_t i = i0; i < i1; ++i) dx[i] = dy[i] * s * (x[i] > T(0) ? T(1) : a * k_exp(x[i]));
        break;
      }
      case Act::gelu:
        // Phi(x) + x phi(x)
        for (int64_t i = i0; i < i1; ++i)
          dx[i] = dy[i] * (T(0.5) * (T(1) + k_erf(x[i] * T(0.70710678118654752))) +
                           x[i] * T(0.39894228040143268) * k_exp(T(-0.5) * x[i] * x[i]));
        break;
      case Act::swish:
        for (int64_t i = i0; i < i1; ++i) {
          const T sg = sigmoid_of(x[i]);
          dx[i] = dy[i] * (sg + x[i] * sg * (T(1) - sg));
        }
        break;
      case Act::softplus:
        for (int64_t i = i0; i < i1; ++i) dx[i] = dy[i] * sigmoid_of(x[i]);
        break;
      case Act::hard_sigmoid:
        for (int64_t i = i0; i < i1; ++i) dx[i] = dy[i] * (x[i] > T(-3) && x[i] < T(3) ? T(1) / T(6) : T(0));
        break;
      case Act::relu_max:
        // 0 < x < alpha exactly where 0 < y < alpha: a layer with the activation fused passes y as x
        for (int64_t i = i0; i < i1; ++i) dx[i] = dy[i] * (x[i] > T(0) && x[i] < alpha ? T(1) : T(0));
        break;
      default:
        for (int64_t i = i0; i < i1; ++i) dx[i] = dy[i];
    }
  });
}

// x, y: [N,K]; stable softmax over each row
template <typename T>
static void softmax_forward(T* y, const T* x, int N, int K) {
  parallel_for(N, grain(4 * int64_t(K)), [&](int64_t n0, int64_t n1, int) {
    for (int64_t n = n0; n < n1; ++n) {
      const T* xp = x + n * K;
      T* yp = y + n * K;
      T m = xp[0];
      for (int k = 1; k < K; ++k) m = xp[k] > m ? xp[k] : m;
      T s = T(0);
      for (int k = 0; k < K; ++k) { yp[k] = k_exp(xp[k] - m); s += yp[k]; }
      const T inv = T(1) / s;
      for (int k = 0; k < K; ++k) yp[k] *= inv;
    }
  });
}

// dy, y, dx: [N,K]; dx = y * (dy - sum(dy * y))
template <typename T>
static void softmax_backward(T* dx, const T* dy, const T* y, int N, int K) {
  parallel_for(N, grain(4 * int64_t(K)), [&](int64_t n0, int64_t n1, int) {
    for (int64_t n = n0; n < n1; ++n) {
      const T* yp = y + n * K;
      const T* dyp = dy + n * K;
      T* dxp = dx + n * K;
      const T s = dot(dyp, yp, K);
      for (int k = 0; k < K; ++k) dxp[k] = yp[k] * (dyp[k] - s);
    }
  });
}

// x, y, mask: [n]
template <typename T>
static void dropout_forward(T* y, T* mask, const T* x, int64_t n, double rate, uint64_t seed, uint64_t stream) {
  const T scale = T(1.0 / (1.0 - rate));
  parallel_for(n, 4096, [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i) {
      const T m = uniform01(seed, stream, uint64_t(i)) >= rate ? scale : T(0);
      mask[i] = m;
      y[i] = x[i] * m;
    }
  });
}

template <typename T>
static void dropout_backward(T* dx, const T* dy, const T* mask, int64_t n) {
  parallel_for(n, kMinWork, [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i) dx[i] = dy[i] * mask[i];
  });
}

// PReLU: y = x > 0 ? x : alpha[idx[i]] * x over N samples of S elements; idx maps an element of
// a sample to its slope (the shared axes collapsed).
template <typename T>
static void prelu_forward(T* y, const T* x, const T* alpha, const int32_t* idx, int N, int64_t S) {
  parallel_for(int64_t(N) * S, kMinWork, [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i) {
      const T v = x[i];
      y[i] = v > T(0) ? v : alpha[idx[i % S]] * v;
    }
  });
}

// dalpha (null: not wanted) summed serially in double; dx (null: not wanted) accumulate or not
template <typename T>
static void prelu_backward(T* dx, T* dalpha, int64_t na, const T* dy, const T* x, const T* alpha, const int32_t* idx,
                           int N, int64_t S, bool accumulate, double* ws) {
  if (dalpha) {
    for (int64_t j = 0; j < na; ++j) ws[j] = 0.0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < S; ++i) {
        const T v = x[n * S + i];
        if (!(v > T(0))) ws[idx[i]] += double(dy[n * S + i]) * double(v);
      }
    for (int64_t j = 0; j < na; ++j) dalpha[j] = T(ws[j]);
  }
  if (!dx) return;
  parallel_for(int64_t(N) * S, kMinWork, [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i) {
      const T g = dy[i] * (x[i] > T(0) ? T(1) : alpha[idx[i % S]]);
      dx[i] = accumulate ? dx[i] + g : g;
    }
  });
}
