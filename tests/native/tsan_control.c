/* Controls for the ThreadSanitizer job (.ci/tsan): with the job's runtime setup, race() must be
 * reported (two OpenMP threads increment one int) and ordered() must not (two regions touch the
 * same halves of a buffer from swapped threads: only the barrier between them orders the
 * accesses, which TSan sees only through the Archer tool of LLVM's OpenMP). */
#include <omp.h>

static int counter;
static float buf[1024];

int race(void) {
#pragma omp parallel num_threads(2)
  { counter++; }
  return counter;
}

float ordered(void) {
  for (int it = 0; it < 20; ++it) {
#pragma omp parallel num_threads(2)
    {
      const int t = omp_get_thread_num();
      for (int i = t * 512; i < t * 512 + 512; ++i) buf[i] += 1.0f;
    }
#pragma omp parallel num_threads(2)
    {
      const int t = 1 - omp_get_thread_num();
      for (int i = t * 512; i < t * 512 + 512; ++i) buf[i] += 1.0f;
    }
  }
  return buf[0];
}
