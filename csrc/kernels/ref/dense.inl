// dense, portable path. Row-major x [N,I], w [I,O] (Keras layout). Forward and weight gradient
// vectorise along O; data gradient is a dot product over O per (n, i).

// x: [N,I]  w: [I,O]  b: [O] or null  y: [N,O]
static int64_t dense_workspace(int, int, int) { return 0; }

template <typename T>
static void dense_forward(T* y, const T* x, const T* w, const T* b, int N, int I, int O, T* /*ws*/) {
  parallel_for(N, grain(int64_t(I) * O), [&](int64_t n0, int64_t n1, int) {
    for (int64_t n = n0; n < n1; ++n) {
      T* yp = y + n * O;
      if (b) for (int o = 0; o < O; ++o) yp[o] = b[o];
      else for (int o = 0; o < O; ++o) yp[o] = T(0);
      const T* xp = x + n * I;
      for (int i = 0; i < I; ++i) {
        const T xv = xp[i];
        const T* wp = w + int64_t(i) * O;
        for (int o = 0; o < O; ++o) yp[o] += xv * wp[o];
      }
    }
  });
}

// dy: [N,O]  w: [I,O]  dx: [N,I]; accumulate: dx += the gradient
template <typename T>
static void dense_backward_data(T* dx, const T* dy, const T* w, int N, int I, int O, T* /*ws*/, bool accumulate) {
  parallel_for(int64_t(N) * I, grain(O), [&](int64_t j0, int64_t j1, int) {
    for (int64_t j = j0; j < j1; ++j) {
      const int64_t n = j / I, i = j % I;
      const T v = dot(dy + n * O, w + i * O, O);
      dx[j] = accumulate ? dx[j] + v : v;
    }
  });
}

// dy: [N,O]  x: [N,I]  dw: [I,O]  db: [O] or null. Split over input features: no partials.
template <typename T>
static void dense_backward_weight(T* dw, T* db, const T* dy, const T* x, int N, int I, int O, T* /*ws*/) {
  parallel_for(I, grain(int64_t(N) * O), [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i) {
      T* wp = dw + i * O;
      for (int o = 0; o < O; ++o) wp[o] = T(0);
      for (int n = 0; n < N; ++n) {
        const T xv = x[int64_t(n) * I + i];
        const T* dyp = dy + int64_t(n) * O;
        for (int o = 0; o < O; ++o) wp[o] += xv * dyp[o];
      }
    }
  });
  if (db) {
    for (int o = 0; o < O; ++o) db[o] = T(0);
    for (int n = 0; n < N; ++n)
      for (int o = 0; o < O; ++o) db[o] += dy[int64_t(n) * O + o];
  }
}
