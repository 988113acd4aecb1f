// SpatialDropout2D and GaussianNoise (noise.h), portable path.

// mask: [n]
template <typename T>
static void channel_mask(T* mask, int64_t n, double rate, uint64_t seed, uint64_t stream) {
  const T scale = T(1.0 / (1.0 - rate));
  for (int64_t i = 0; i < n; ++i) mask[i] = uniform01(seed, stream, uint64_t(i)) >= rate ? scale : T(0);
}

// x, y: [N, M, C], mask: [N, C]
template <typename T>
static void scale_channels(T* y, const T* x, const T* mask, int N, int64_t M, int C) {
  parallel_for(int64_t(N) * M, grain(int64_t(C)), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* m = mask + (r / M) * C;
      for (int c = 0; c < C; ++c) y[r * C + c] = x[r * C + c] * m[c];
    }
  });
}

// x, y: [n]
template <typename T>
static void gaussian_noise(T* y, const T* x, int64_t n, double stddev, uint64_t seed, uint64_t stream) {
  parallel_for(n, 4096, [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i) y[i] = x[i] + T(stddev * normal01(seed, stream, uint64_t(i)));
  });
}
