// CPU capability detection and the kernel-table choice. The capability is computed once;
// CNNBP_CPU_CAPABILITY=baseline|avx2|avx512 (x86-64) or baseline|neon (aarch64) may lower it
// (never raise it; a name of the other architecture is ignored).
#pragma once
#include <string>

namespace cnnbp {

// neon: the register-blocked kernels with 4-float vectors on aarch64 (Advanced SIMD).
enum class CpuCapability { baseline = 0, avx2 = 1, avx512 = 2, neon = 3 };
constexpr int kNumCapabilities = 4;

CpuCapability detected_capability();   // what the CPU and OS support
CpuCapability cpu_capability();        // what cnnbp uses (after the environment override)
const char* capability_name(CpuCapability c);
bool compiled_capability(CpuCapability c);  // whether this build carries that path

}  // namespace cnnbp
