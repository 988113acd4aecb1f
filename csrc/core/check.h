// Argument checks at the API edge. A failed check throws std::invalid_argument (ValueError in
// Python) with a message built from its parts, e.g.
//   CNNBP_CHECK(c == w_c, "conv2d: expected ", w_c, " input channels, got ", c);
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace cnnbp {

// Raised when a loss (or, in debug mode, an activation) is NaN or Inf; Python sees
// cnnbp.NumericalError.
class NumericalError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace cnnbp

#define CNNBP_CHECK(cond, ...)                                              \
  do {                                                                      \
    if (!(cond)) throw std::invalid_argument(::cnnbp::detail::concat(__VA_ARGS__)); \
  } while (0)

#define CNNBP_CHECK_INDEX(cond, ...)                                        \
  do {                                                                      \
    if (!(cond)) throw std::out_of_range(::cnnbp::detail::concat(__VA_ARGS__)); \
  } while (0)
