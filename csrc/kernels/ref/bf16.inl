// Rounding to bfloat16 values (mixed precision's emulated operands; the rule is bf16_round in
// kernels/bf16.h). Branch-free, so each ISA's object vectorises it.
template <typename T>
static void round_bf16(T* dst, const T* src, int64_t n) {
  parallel_for(n, 1 << 15, [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i) dst[i] = T(bf16_round(float(src[i])));
  });
}
