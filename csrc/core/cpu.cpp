#include "core/cpu.h"

#include <cstdlib>
#include <cstring>

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#endif

namespace cnnbp {

CpuCapability detected_capability() {
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
  // __builtin_cpu_supports also checks that the OS saves the wider register state (XGETBV).
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return CpuCapability::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuCapability::avx2;
#elif defined(__aarch64__)
  // Advanced SIMD is part of every ARMv8-A core; Linux says so in the auxiliary vector all the same
  // (macOS on Apple silicon always has it).
#if defined(__linux__)
  if (getauxval(AT_HWCAP) & HWCAP_ASIMD) return CpuCapability::neon;
#else
  return CpuCapability::neon;
#endif
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
#ifdef CNNBP_HAVE_NEON
    case CpuCapability::neon: return true;
#endif
    default: return false;
  }
}

const char* capability_name(CpuCapability c) {
  switch (c) {
    case CpuCapability::avx512: return "avx512";
    case CpuCapability::avx2: return "avx2";
    case CpuCapability::neon: return "neon";
    default: return "baseline";
  }
}

CpuCapability cpu_capability() {
  static const CpuCapability chosen = [] {
    const CpuCapability best = detected_capability();
    CpuCapability c = best;
    if (const char* s = std::getenv("CNNBP_CPU_CAPABILITY")) {
      // Only baseline or a path at or below the detected one on this architecture counts.
      CpuCapability want = best;
      if (!std::strcmp(s, "baseline") || !std::strcmp(s, "default")) want = CpuCapability::baseline;
      else if (!std::strcmp(s, "avx2")) want = CpuCapability::avx2;
      else if (!std::strcmp(s, "avx512")) want = CpuCapability::avx512;
      else if (!std::strcmp(s, "neon")) want = CpuCapability::neon;
      const bool x86 = best == CpuCapability::avx2 || best == CpuCapability::avx512;
      if (want == CpuCapability::baseline || (x86 && want != CpuCapability::neon && int(want) < int(best))) c = want;
    }
    while (!compiled_capability(c)) {  // an x86 path this build lacks falls to the one below it
      c = c == CpuCapability::neon || c == CpuCapability::avx2 ? CpuCapability::baseline
                                                               : static_cast<CpuCapability>(int(c) - 1);
    }
    return c;
  }();
  return chosen;
}

}  // namespace cnnbp
