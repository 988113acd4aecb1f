#include "core/cpu.h"

#include <cstdlib>
#include <cstring>

namespace cnnbp {

CpuCapability detected_capability() {
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
  // __builtin_cpu_supports also checks that the OS saves the wider register state (XGETBV).
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return CpuCapability::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuCapability::avx2;
#endif
  return CpuCapability::baseline;
}

bool compiled_capability(CpuCapability c) {
  switch (c) {
    case CpuCapability::baseline: return true;
#ifdef CNNBP_HAVE_AVX2
    case CpuCapability::avx2: return true;
#endif
#ifdef CNNBP_HAVE_AVX512
    case CpuCapability::avx512: return true;
#endif
    default: return false;
  }
}

const char* capability_name(CpuCapability c) {
  switch (c) {
    case CpuCapability::avx512: return "avx512";
    case CpuCapability::avx2: return "avx2";
    default: return "baseline";
  }
}

CpuCapability cpu_capability() {
  static const CpuCapability chosen = [] {
    CpuCapability c = detected_capability();
    if (const char* s = std::getenv("CNNBP_CPU_CAPABILITY")) {
      CpuCapability want = c;
      if (!std::strcmp(s, "baseline") || !std::strcmp(s, "default")) want = CpuCapability::baseline;
      else if (!std::strcmp(s, "avx2")) want = CpuCapability::avx2;
      else if (!std::strcmp(s, "avx512")) want = CpuCapability::avx512;
      if (static_cast<int>(want) < static_cast<int>(c)) c = want;
    }
    while (!compiled_capability(c)) c = static_cast<CpuCapability>(static_cast<int>(c) - 1);
    return c;
  }();
  return chosen;
}

}  // namespace cnnbp
