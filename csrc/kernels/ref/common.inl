// Helpers for the kernel templates. This file and every ref/*.inl are included inside an
// anonymous namespace of kernels_isa.cpp, once per ISA, so nothing here may include headers.

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }
static inline int64_t lmin(int64_t a, int64_t b) { return a < b ? a : b; }

static inline float k_exp(float x) { return __builtin_expf(x); }
static inline double k_exp(double x) { return __builtin_exp(x); }
static inline float k_log(float x) { return __builtin_logf(x); }
static inline double k_log(double x) { return __builtin_log(x); }
static inline float k_log1p(float x) { return __builtin_log1pf(x); }
static inline double k_log1p(double x) { return __builtin_log1p(x); }
static inline float k_erf(float x) { return __builtin_erff(x); }
static inline double k_erf(double x) { return __builtin_erf(x); }
static inline float k_tanh(float x) { return __builtin_tanhf(x); }
static inline double k_tanh(double x) { return __builtin_tanh(x); }
static inline float k_sqrt(float x) { return __builtin_sqrtf(x); }
static inline double k_sqrt(double x) { return __builtin_sqrt(x); }
static inline float k_fabs(float x) { return __builtin_fabsf(x); }
static inline double k_fabs(double x) { return __builtin_fabs(x); }

// Before an elementwise loop whose output may be one of its inputs at the same index (y = x, in
// place): there is no dependence between iterations, so the compiler may vectorise it without
// the run-time overlap checks (and their scalar fallback) it otherwise emits per call.
#if defined(__clang__)
#define CNNBP_NO_LOOP_DEPS _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define CNNBP_NO_LOOP_DEPS _Pragma("GCC ivdep")
#else
#define CNNBP_NO_LOOP_DEPS
#endif

// Items per thread so that one chunk holds about kMinWork multiply-adds: smaller work runs
// inline, as a parallel region costs most of a microsecond (0.7 us for 2 threads).
constexpr int64_t kMinWork = 1 << 15;
static inline int64_t grain(int64_t work_per_item) {
  if (work_per_item < 1) work_per_item = 1;
  int64_t g = kMinWork / work_per_item;
  return g < 1 ? 1 : g;
}

// Dot product with 16 independent partial sums combined in a fixed order: vectorises without
// -ffast-math, and rounds the same way on every ISA.
template <typename T>
static inline T dot(const T* a, const T* b, int64_t n) {
  T acc[16] = {0};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * b[i + j];
  for (int j = 0; i + j < n; ++j) acc[j] += a[i + j] * b[i + j];
  for (int w = 8; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) acc[j] += acc[j + w];
  return acc[0];
}

// dw += partial[1] + ... + partial[nb - 1] in block order (each partial: nw floats of dw, then
// nk of db when db is not null), split over weight elements.
template <typename T>
static void add_block_partials(T* dw, T* db, const T* partials, int64_t nw, int64_t nk, int nb) {
  if (nb <= 1) return;
  const int64_t stride = nw + nk;
  parallel_for(stride, 4096, [&](int64_t i0, int64_t i1, int) {
    for (int b = 1; b < nb; ++b) {
      const T* src = partials + (b - 1) * stride;
      for (int64_t i = i0; i < (i1 < nw ? i1 : nw); ++i) dw[i] += src[i];
      if (db)
        for (int64_t i = i0 > nw ? i0 : nw; i < i1; ++i) db[i - nw] += src[i];
    }
  });
}
