// Chooses the float kernel table once, from the CPU capability (core/cpu.h).
#include "kernels/kernels.h"

namespace cnnbp {

const KernelTable<float>& kernels_f32_for(CpuCapability c) {
  switch (c) {
#ifdef CNNBP_HAVE_AVX512
    case CpuCapability::avx512: return *isa_avx512::table_f32();
#endif
#ifdef CNNBP_HAVE_AVX2
    case CpuCapability::avx2: return *isa_avx2::table_f32();
#endif
#ifdef CNNBP_HAVE_NEON
    case CpuCapability::neon: return *isa_neon::table_f32();
#endif
    default: return *isa_baseline::table_f32();
  }
}

const KernelTable<float>& kernels_f32() {
  static const KernelTable<float>& t = kernels_f32_for(cpu_capability());
  return t;
}

const KernelTable<double>& kernels_f64() { return *isa_baseline::table_f64(); }

}  // namespace cnnbp
