#include "core/memory.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <sys/resource.h>
#include <unistd.h>

namespace cnnbp {

namespace {

// A number from the first line of a file, or -1 ("max", missing, unreadable).
int64_t read_number(const char* path) {
  std::ifstream f(path);
  std::string s;
  if (!f || !(f >> s) || s.empty() || s[0] < '0' || s[0] > '9') return -1;
  try {
    const unsigned long long v = std::stoull(s);
    return v > (1ull << 62) ? -1 : int64_t(v);
  } catch (...) {
    return -1;
  }
}

int64_t mapped_bytes() {
  std::ifstream f("/proc/self/statm");
  int64_t pages = 0;
  if (!(f >> pages)) return 0;
  return pages * int64_t(sysconf(_SC_PAGESIZE));
}

void take(MemoryBudget* b, int64_t bytes, const char* source) {
  if (bytes < 0) return;
  if (b->bytes < 0 || bytes < b->bytes) {
    b->bytes = bytes;
    b->source = source;
  }
}

std::string gib(double bytes) {
  char s[32];
  std::snprintf(s, sizeof(s), "%.3g GiB", bytes / (1024.0 * 1024.0 * 1024.0));
  return s;
}

// CNNBP_MAX_MEMORY: bytes, or a number with a K, M, G or T suffix (powers of 1024); -1 when unset.
// A value that does not parse is ignored (the budget must not depend on a typo to be safe: the
// machine's own limits still apply).
int64_t env_limit() {
  const char* s = std::getenv("CNNBP_MAX_MEMORY");
  if (!s || !*s) return -1;
  char* end = nullptr;
  const double v = std::strtod(s, &end);
  if (end == s || !(v >= 0) || v > 1e18) return -1;
  double scale = 1;
  switch (*end) {
    case 'k': case 'K': scale = 1024.0; ++end; break;
    case 'm': case 'M': scale = 1024.0 * 1024; ++end; break;
    case 'g': case 'G': scale = 1024.0 * 1024 * 1024; ++end; break;
    case 't': case 'T': scale = 1024.0 * 1024 * 1024 * 1024; ++end; break;
    default: break;
  }
  if (*end == 'i' || *end == 'I') ++end;
  if (*end == 'b' || *end == 'B') ++end;
  if (*end) return -1;
  const double bytes = v * scale;
  return bytes > 4e18 ? -1 : int64_t(bytes);
}

}  // namespace

MemoryBudget memory_budget() {
  MemoryBudget b;
  take(&b, env_limit(), "CNNBP_MAX_MEMORY");
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) take(&b, int64_t(pages) * page, "physical memory");
  rlimit r{};
  if (getrlimit(RLIMIT_AS, &r) == 0 && r.rlim_cur != RLIM_INFINITY) {
    const int64_t left = int64_t(r.rlim_cur) - mapped_bytes();
    take(&b, left > 0 ? left : 0, "RLIMIT_AS (ulimit -v)");
  }
  int64_t lim = read_number("/sys/fs/cgroup/memory.max");
  int64_t used = read_number("/sys/fs/cgroup/memory.current");
  if (lim < 0) {
    lim = read_number("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    used = read_number("/sys/fs/cgroup/memory/memory.usage_in_bytes");
  }
  if (lim >= 0) take(&b, used >= 0 && used < lim ? lim - used : lim, "cgroup memory limit");
  return b;
}

void check_memory_budget(int64_t bytes, const std::string& what, const std::string& detail) {
  const MemoryBudget b = memory_budget();
  if (b.bytes < 0 || bytes <= b.bytes) return;
  std::ostringstream os;
  os << "cnnbp: " << what << " would take " << gib(double(bytes));
  if (!detail.empty()) os << " (" << detail << ")";
  os << "; this process can be given at most " << gib(double(b.bytes)) << " (" << b.source
     << "): use a smaller batch or model";
  throw BudgetError(os.str());
}

}  // namespace cnnbp
