// The memory budget: what this process can still be given (physical memory, the address-space
// limit RLIMIT_AS, a cgroup's memory limit), checked before a plan allocates so that a model too
// large for the machine is a MemoryError naming the plan, not a process the OOM killer ends later.
#pragma once
#include <cstdint>
#include <new>
#include <string>

namespace cnnbp {

// std::bad_alloc (MemoryError in Python) with a full message.
class BudgetError : public std::bad_alloc {
 public:
  explicit BudgetError(std::string msg) : msg_(std::move(msg)) {}
  const char* what() const noexcept override { return msg_.c_str(); }

 private:
  std::string msg_;
};

struct MemoryBudget {
  int64_t bytes = -1;  // -1: unknown (no check)
  std::string source;  // "physical memory", "RLIMIT_AS", "cgroup memory limit"
};

// The smallest of: the CNNBP_MAX_MEMORY environment variable (bytes, or with a K/M/G/T suffix,
// powers of 1024); physical memory; RLIMIT_AS minus the address space already mapped; the
// cgroup (v2 memory.max, v1 memory.limit_in_bytes) limit minus its current use. Read on each call.
MemoryBudget memory_budget();

// Throws BudgetError when `bytes` exceed the budget: "<what> would take X GiB (<detail>); this
// process can be given at most Y GiB (<source>)".
void check_memory_budget(int64_t bytes, const std::string& what, const std::string& detail);

}  // namespace cnnbp
