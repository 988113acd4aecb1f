// A thin vector layer over GCC/Clang vector extensions: Vec<VL> is VL floats. The same kernel
// source compiles to AVX2 (VL = 8), to AVX-512 (VL = 16), to NEON on aarch64 (VL = 4), and, for
// testing the AVX-512 tiling on machines without it, to VL = 16 on AVX2 (each vector split into
// two ymm registers).
// Included inside the per-ISA anonymous namespace (see kernels_isa.cpp): no headers here.

template <int VL>
struct VecT {
  typedef float type __attribute__((vector_size(VL * sizeof(float))));
};
template <int VL>
using Vec = typename VecT<VL>::type;

template <int VL>
static inline Vec<VL> vload(const float* p) {
  Vec<VL> v;
  __builtin_memcpy(&v, p, sizeof(v));  // an unaligned load
  return v;
}

template <int VL>
static inline void vstore(float* p, Vec<VL> v) {
  __builtin_memcpy(p, &v, sizeof(v));
}

// Initializer lists with one repeated value compile to a single broadcast (vbroadcastss); a loop
// over lanes compiles to a chain of inserts.
template <int VL> static inline Vec<VL> vbroadcast(float s);
template <> inline Vec<4> vbroadcast<4>(float s) { return Vec<4>{s, s, s, s}; }
template <> inline Vec<8> vbroadcast<8>(float s) { return Vec<8>{s, s, s, s, s, s, s, s}; }
template <> inline Vec<16> vbroadcast<16>(float s) {
  return Vec<16>{s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s};
}

template <int VL>
static inline Vec<VL> vzero() {
  return vbroadcast<VL>(0.0f);
}

// Loads n < VL floats, zero-filling the rest (tails).
template <int VL>
static inline Vec<VL> vload_partial(const float* p, int n) {
  float tmp[VL];
  for (int i = 0; i < VL; ++i) tmp[i] = i < n ? p[i] : 0.0f;
  return vload<VL>(tmp);
}

template <int VL>
static inline void vstore_partial(float* p, Vec<VL> v, int n) {
  float tmp[VL];
  vstore<VL>(tmp, v);
  for (int i = 0; i < n; ++i) p[i] = tmp[i];
}

// Register tiles per vector width: MR pixels (or rows) x NV vectors of output channels (MR <= 14:
// the drivers' tail switches go to 13).
// VL 4 (NEON, 32 q registers): 12 x 2 vectors = 24 accumulators, or 14 x 1.
// VL 8 (AVX2, 16 ymm): 6 x 2 vectors = 12 accumulators, or 12 x 1 when K fits one vector.
// VL 16 (AVX-512, 32 zmm): 14 x 2 vectors = 28 accumulators, as PERF_NOTES section 3.3.
template <int VL> struct Tile;
template <> struct Tile<4> { static constexpr int MR2 = 12, MR1 = 14; };
template <> struct Tile<8> { static constexpr int MR2 = 6, MR1 = 12; };
template <> struct Tile<16> { static constexpr int MR2 = 14, MR1 = 14; };
