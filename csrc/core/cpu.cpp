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

namespace {
// This architecture's kernel paths, lowest first.
#if defined(__x86_64__) || defined(_M_X64)
constexpr CpuCapability kLadder[] = {CpuCapability::baseline, CpuCapability::avx2, CpuCapability::avx512};
#elif defined(__aarch64__)
constexpr CpuCapability kLadder[] = {CpuCapability::baseline, CpuCapability::neon};
#else
constexpr CpuCapability kLadder[] = {CpuCapability::baseline};
#endif
constexpr int kRungs = int(sizeof(kLadder) / sizeof(kLadder[0]));
int rung(CpuCapability c) {
  for (int i = 0; i < kRungs; ++i)
    if (kLadder[i] == c) return i;
  return -1;
}
}  // namespace

CpuCapability cpu_capability() {
  static const CpuCapability chosen = [] {
    int r = rung(detected_capability());
    if (const char* s = std::getenv("CNNBP_CPU_CAPABILITY")) {
      const char* name = !std::strcmp(s, "default") ? "baseline" : s;
      for (int i = 0; i < r; ++i)  // a lower path of this architecture; anything else is ignored
        if (!std::strcmp(name, capability_name(kLadder[i]))) r = i;
    }
    while (r > 0 && !compiled_capability(kLadder[r])) --r;  // a path this build lacks: the one below
    return kLadder[r];
  }();
  return chosen;
}

}  // namespace cnnbp
