// Counter-based random numbers: every draw is a pure function of (seed, stream, index), so
// initializers and dropout masks do not depend on the thread split or on call order.
#pragma once
#include <cmath>
#include <cstdint>

namespace cnnbp {

static inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

static inline uint64_t hash3(uint64_t seed, uint64_t stream, uint64_t index) {
  return splitmix64(splitmix64(splitmix64(seed) ^ stream) ^ index);
}

// Uniform in [0, 1) with 53 random bits.
static inline double uniform01(uint64_t seed, uint64_t stream, uint64_t index) {
  return static_cast<double>(hash3(seed, stream, index) >> 11) * (1.0 / 9007199254740992.0);
}

// Standard normal by Box-Muller from two independent uniforms.
static inline double normal01(uint64_t seed, uint64_t stream, uint64_t index) {
  double u1 = uniform01(seed, stream, 2 * index);
  double u2 = uniform01(seed, stream, 2 * index + 1);
  if (u1 < 1e-300) u1 = 1e-300;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

}  // namespace cnnbp
