// cnnbp._core.ops: every kernel's forward and backward on numpy arrays, in float32 (`_f32`, the
// dispatched SIMD path or an explicitly named ISA) and float64 (`_f64`, the portable reference).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "bindings/common.h"
#include "core/cpu.h"
#include "kernels/bf16.h"
#include "core/buffer.h"
#include "core/parallel.h"

namespace cnnbp {

template <>
const KernelTable<float>& table_named<float>(const std::string& isa) {
  if (isa.empty()) return kernels_f32();
  if (isa == "avx2-wide") {
#ifdef CNNBP_HAVE_AVX2
    CNNBP_CHECK(int(detected_capability()) >= int(CpuCapability::avx2), "isa 'avx2-wide' needs an AVX2 CPU");
    return *isa_avx2::table_f32_wide();
#else
    throw std::invalid_argument("isa 'avx2-wide' is not compiled into this build");
#endif
  }
  if (isa == "bf16-emulated") return kernels_bf16_for(Bf16Path::emulated);
  if (isa == "avx512_bf16") {
    CNNBP_CHECK(bf16_detected() == Bf16Path::avx512_bf16, "isa 'avx512_bf16' needs a CPU with AVX512_BF16 and a build "
                "with its kernels");
    return kernels_bf16_for(Bf16Path::avx512_bf16);
  }
  CpuCapability c;
  if (isa == "baseline") c = CpuCapability::baseline;
  else if (isa == "avx2") c = CpuCapability::avx2;
  else if (isa == "avx512") c = CpuCapability::avx512;
  else throw std::invalid_argument("isa: expected 'baseline', 'avx2', 'avx512', 'avx2-wide', 'bf16-emulated' or 'avx512_bf16', got '" + isa + "'");
  CNNBP_CHECK(compiled_capability(c), "isa '", isa, "' is not compiled into this build");
  CNNBP_CHECK(int(c) <= int(detected_capability()), "isa '", isa, "' is not supported by this CPU");
  return kernels_f32_for(c);
}
template <>
const KernelTable<double>& table_named<double>(const std::string& isa) {
  CNNBP_CHECK(isa.empty() || isa == "baseline", "float64 kernels exist only on the portable path, got isa '", isa, "'");
  return kernels_f64();
}

namespace {

// Per-thread scratch that only grows: repeated op calls do not allocate (or fault in) workspace.
template <typename T>
T* scratch(int64_t n) {
  thread_local Buffer<T> buf;
  buf.reserve(size_t(n > 0 ? n : 1));
  return buf.data();
}

using Pair = std::pair<int, int>;
using Pads = std::tuple<int, int, int, int>;

void require_ndim(const py::array& a, int nd, const char* who, const char* what, const char* layout) {
  CNNBP_CHECK(a.ndim() == nd, who, ": expected ", what, " of rank ", nd, " ", layout, ", got shape ", py_shape_str(a));
}

PadMode pad_mode(int m) {
  CNNBP_CHECK(m >= 0 && m <= 2, "padding mode must be 0 (valid), 1 (same) or 2 (explicit), got ", m);
  return PadMode(m);
}

void resolve(PadMode mode, int H, int W, int kh, int kw, int sh, int sw, int dh, int dw, Pads pads, int* pt,
             int* pb, int* pl, int* pr) {
  if (mode == PadMode::same) {
    CNNBP_CHECK(sh > 0 && sw > 0 && dh > 0 && dw > 0, "strides and dilation must be positive");
    same_padding(H, kh, sh, dh, pt, pb);
    same_padding(W, kw, sw, dw, pl, pr);
  } else if (mode == PadMode::explicit_) {
    std::tie(*pt, *pb, *pl, *pr) = pads;
  } else {
    *pt = *pb = *pl = *pr = 0;
  }
}

template <typename T>
Conv2dParams conv_params(int N, int H, int W, int C, int K, int R, int S, Pair st, Pair dil, int mode, Pads pads) {
  int pt, pb, pl, pr;
  resolve(pad_mode(mode), H, W, R, S, st.first, st.second, dil.first, dil.second, pads, &pt, &pb, &pl, &pr);
  return make_conv2d_params("conv2d", N, H, W, C, K, R, S, st.first, st.second, dil.first, dil.second, pt, pb, pl, pr);
}

// The algorithm an op forces ("" = the kernels' own choice; kernels/conv2d.h ConvAlgo).
int conv_algo_named(const std::string& a) {
  if (a.empty()) return kConvAuto;
  if (a == "direct") return kConvDirect;
  if (a == "winograd2") return kConvWinograd2;
  if (a == "winograd" || a == "winograd4") return kConvWinograd4;
  CNNBP_CHECK(false, "conv2d: algo must be 'direct', 'winograd', 'winograd2' or 'winograd4', got '", a, "'");
  return kConvAuto;
}

template <typename T>
py::array_t<T> conv2d_forward(carray<T> x, carray<T> w, py::object b, Pair st, Pair dil, int mode, Pads pads,
                              bool relu, const std::string& isa, const std::string& algo) {
  require_ndim(x, 4, "conv2d", "x", "(N, H, W, C)");
  require_ndim(w, 4, "conv2d", "kernel", "(kh, kw, C, K)");
  CNNBP_CHECK(w.shape(2) == x.shape(3), "conv2d: expected kernel with ", x.shape(3), " input channels, got kernel shape ",
              py_shape_str(w));
  Conv2dParams p = conv_params<T>(int(x.shape(0)), int(x.shape(1)), int(x.shape(2)), int(x.shape(3)),
                                  int(w.shape(3)), int(w.shape(0)), int(w.shape(1)), st, dil, mode, pads);
  p.relu = relu;
  p.algo = conv_algo_named(algo);
  carray<T> bias;
  const T* bp = nullptr;
  if (!b.is_none()) {
    bias = carray<T>::ensure(b);
    CNNBP_CHECK(bias && bias.ndim() == 1 && bias.shape(0) == p.K, "conv2d: expected bias of shape (", p.K, ",), got ",
                bias ? py_shape_str(bias) : std::string("a non-array"));
    bp = bias.data();
  }
  const auto& k = table_named<T>(isa);
  py::array_t<T> y({py::ssize_t(p.N), py::ssize_t(p.P), py::ssize_t(p.Q), py::ssize_t(p.K)});
  const int nt = get_num_threads();  // read once: the workspace and the kernel use the same count
  T* ws = scratch<T>(k.conv2d_workspace(p, nt));
  {
    py::gil_scoped_release nogil;
    ThreadScope pin(nt);
    k.conv2d_forward(y.mutable_data(), x.data(), w.data(), bp, ws, p);
  }
  return y;
}

// The data-gradient output: fresh, or a copy of `add_to` (same shape) that the kernel adds into.
template <typename T>
py::array_t<T> gradient_out(const std::vector<py::ssize_t>& shape, py::object add_to, const char* who) {
  py::array_t<T> dx(shape);
  if (add_to.is_none()) return dx;
  carray<T> a = carray<T>::ensure(add_to);
  CNNBP_CHECK(a && py_shape_str(a) == py_shape_str(dx), who, ": expected add_to of shape ", py_shape_str(dx), ", got ",
              a ? py_shape_str(a) : std::string("a non-array"));
  std::memcpy(dx.mutable_data(), a.data(), sizeof(T) * size_t(dx.size()));
  return dx;
}

template <typename T>
py::array_t<T> conv2d_backward_data(carray<T> dy, carray<T> w, Pair in_hw, Pair st, Pair dil, int mode, Pads pads,
                                    py::object add_to, const std::string& isa, const std::string& algo) {
  require_ndim(dy, 4, "conv2d_backward_data", "dy", "(N, P, Q, K)");
  require_ndim(w, 4, "conv2d_backward_data", "kernel", "(kh, kw, C, K)");
  Conv2dParams p = conv_params<T>(int(dy.shape(0)), in_hw.first, in_hw.second, int(w.shape(2)), int(w.shape(3)),
                                  int(w.shape(0)), int(w.shape(1)), st, dil, mode, pads);
  p.algo = conv_algo_named(algo);
  CNNBP_CHECK(dy.shape(1) == p.P && dy.shape(2) == p.Q && dy.shape(3) == p.K, "conv2d_backward_data: expected dy of shape (",
              p.N, ", ", p.P, ", ", p.Q, ", ", p.K, "), got ", py_shape_str(dy));
  const auto& k = table_named<T>(isa);
  py::array_t<T> dx = gradient_out<T>({py::ssize_t(p.N), py::ssize_t(p.H), py::ssize_t(p.W), py::ssize_t(p.C)},
                                      add_to, "conv2d_backward_data");
  const int nt = get_num_threads();  // read once: the workspace and the kernel use the same count
  T* ws = scratch<T>(k.conv2d_workspace(p, nt));
  {
    py::gil_scoped_release nogil;
    ThreadScope pin(nt);
    k.conv2d_backward_data(dx.mutable_data(), dy.data(), w.data(), ws, p, !add_to.is_none());
  }
  return dx;
}

template <typename T>
py::tuple conv2d_backward_weight(carray<T> dy, carray<T> x, Pair ksize, Pair st, Pair dil, int mode, Pads pads,
                                 bool with_bias, const std::string& isa, const std::string& algo) {
  require_ndim(dy, 4, "conv2d_backward_weight", "dy", "(N, P, Q, K)");
  require_ndim(x, 4, "conv2d_backward_weight", "x", "(N, H, W, C)");
  Conv2dParams p = conv_params<T>(int(x.shape(0)), int(x.shape(1)), int(x.shape(2)), int(x.shape(3)),
                                  int(dy.shape(3)), ksize.first, ksize.second, st, dil, mode, pads);
  p.algo = conv_algo_named(algo);
  CNNBP_CHECK(dy.shape(0) == p.N && dy.shape(1) == p.P && dy.shape(2) == p.Q, "conv2d_backward_weight: expected dy of shape (",
              p.N, ", ", p.P, ", ", p.Q, ", ", p.K, "), got ", py_shape_str(dy));
  const auto& k = table_named<T>(isa);
  py::array_t<T> dw({py::ssize_t(p.R), py::ssize_t(p.S), py::ssize_t(p.C), py::ssize_t(p.K)});
  py::array_t<T> db({py::ssize_t(p.K)});
  const int nt = get_num_threads();  // read once: the workspace and the kernel use the same count
  T* ws = scratch<T>(k.conv2d_workspace(p, nt));
  {
    py::gil_scoped_release nogil;
    ThreadScope pin(nt);
    k.conv2d_backward_weight(dw.mutable_data(), with_bias ? db.mutable_data() : nullptr, dy.data(), x.data(),
                             ws, p);
  }
  return py::make_tuple(dw, with_bias ? py::object(db) : py::object(py::none()));
}

// The algorithms conv2d's three passes run for one layer shape (forcing with `algo` as the passes do).
py::dict conv2d_algorithms(std::vector<int> x_shape, std::vector<int> w_shape, Pair st, Pair dil, int mode, Pads pads,
                           const std::string& isa, const std::string& algo) {
  CNNBP_CHECK(x_shape.size() == 4 && w_shape.size() == 4, "conv2d_algorithms: expected x_shape (N, H, W, C) and "
              "kernel_shape (kh, kw, C, K)");
  CNNBP_CHECK(w_shape[2] == x_shape[3], "conv2d_algorithms: expected kernel with ", x_shape[3],
              " input channels, got ", w_shape[2]);
  Conv2dParams p = conv_params<float>(x_shape[0], x_shape[1], x_shape[2], x_shape[3], w_shape[3], w_shape[0],
                                      w_shape[1], st, dil, mode, pads);
  p.algo = conv_algo_named(algo);
  const auto& k = table_named<float>(isa);
  const int nt = get_num_threads();
  py::dict out;
  const char* passes[3] = {"forward", "backward_data", "backward_weight"};
  for (int i = 0; i < 3; ++i) {
    int a;
    {
      py::gil_scoped_release nogil;
      ThreadScope pin(nt);
      a = k.conv2d_algorithm(p, i);
    }
    out[passes[i]] = a == kConvWinograd2 ? "winograd2" : a == kConvWinograd4 ? "winograd4" : "direct";
  }
  return out;
}

template <typename T>
Pool2dParams pool_params(const py::array& x, Pair pool, Pair st, int mode) {
  require_ndim(x, 4, "pool2d", "x", "(N, H, W, C)");
  const int H = int(x.shape(1)), W = int(x.shape(2));
  int pt, pb, pl, pr;
  resolve(pad_mode(mode), H, W, pool.first, pool.second, st.first, st.second, 1, 1, Pads{0, 0, 0, 0}, &pt, &pb, &pl, &pr);
  return make_pool2d_params("pool2d", int(x.shape(0)), H, W, int(x.shape(3)), pool.first, pool.second, st.first,
                            st.second, pt, pb, pl, pr);
}

template <typename T>
py::tuple max_pool2d_forward(carray<T> x, Pair pool, Pair st, int mode, const std::string& isa) {
  const Pool2dParams p = pool_params<T>(x, pool, st, mode);
  const auto& k = table_named<T>(isa);
  const std::vector<py::ssize_t> shape{p.N, p.P, p.Q, p.C};
  py::array_t<T> y(shape);
  py::array_t<int32_t> am(shape);
  {
    py::gil_scoped_release nogil;
    k.max_pool2d_forward(y.mutable_data(), am.mutable_data(), x.data(), p);
  }
  return py::make_tuple(y, am);
}

template <typename T>
py::array_t<T> max_pool2d_backward(carray<T> dy, carray<int32_t> argmax, carray<T> x, Pair pool, Pair st, int mode,
                                   std::optional<carray<T>> relu_y, const std::string& isa) {
  const Pool2dParams p = pool_params<T>(x, pool, st, mode);
  const std::vector<py::ssize_t> oshape{p.N, p.P, p.Q, p.C};
  CNNBP_CHECK(array_shape(dy) == Shape(oshape.begin(), oshape.end()) && array_shape(argmax) == array_shape(dy),
              "max_pool2d_backward: expected dy and argmax of shape (", p.N, ", ", p.P, ", ", p.Q, ", ", p.C, "), got ",
              py_shape_str(dy), " and ", py_shape_str(argmax));
  const int32_t* a = argmax.data();
  for (py::ssize_t i = 0; i < argmax.size(); ++i)
    CNNBP_CHECK_INDEX(a[i] >= 0 && a[i] < p.H * p.W, "max_pool2d_backward: argmax entry ", a[i], " out of range");
  CNNBP_CHECK(!relu_y || array_shape(*relu_y) == array_shape(dy), "max_pool2d_backward: expected relu_y of shape ",
              py_shape_str(dy), ", got ", relu_y ? py_shape_str(*relu_y) : std::string());
  const T* ry = relu_y ? relu_y->data() : nullptr;
  const auto& k = table_named<T>(isa);
  py::array_t<T> dx({py::ssize_t(p.N), py::ssize_t(p.H), py::ssize_t(p.W), py::ssize_t(p.C)});
  {
    py::gil_scoped_release nogil;
    k.max_pool2d_backward(dx.mutable_data(), dy.data(), a, p, ry);
  }
  return dx;
}

template <typename T>
py::array_t<T> avg_pool2d_forward(carray<T> x, Pair pool, Pair st, int mode, const std::string& isa) {
  const Pool2dParams p = pool_params<T>(x, pool, st, mode);
  const auto& k = table_named<T>(isa);
  py::array_t<T> y({py::ssize_t(p.N), py::ssize_t(p.P), py::ssize_t(p.Q), py::ssize_t(p.C)});
  {
    py::gil_scoped_release nogil;
    k.avg_pool2d_forward(y.mutable_data(), x.data(), p);
  }
  return y;
}

template <typename T>
py::array_t<T> avg_pool2d_backward(carray<T> dy, carray<T> x, Pair pool, Pair st, int mode, const std::string& isa) {
  const Pool2dParams p = pool_params<T>(x, pool, st, mode);
  CNNBP_CHECK(dy.ndim() == 4 && dy.shape(0) == p.N && dy.shape(1) == p.P && dy.shape(2) == p.Q && dy.shape(3) == p.C,
              "avg_pool2d_backward: expected dy of shape (", p.N, ", ", p.P, ", ", p.Q, ", ", p.C, "), got ", py_shape_str(dy));
  const auto& k = table_named<T>(isa);
  py::array_t<T> dx({py::ssize_t(p.N), py::ssize_t(p.H), py::ssize_t(p.W), py::ssize_t(p.C)});
  {
    py::gil_scoped_release nogil;
    k.avg_pool2d_backward(dx.mutable_data(), dy.data(), p);
  }
  return dx;
}

template <typename T>
py::array_t<T> gap_forward(carray<T> x, const std::string& isa) {
  require_ndim(x, 4, "global_avg_pool2d", "x", "(N, H, W, C)");
  CNNBP_CHECK(x.shape(1) > 0 && x.shape(2) > 0 && x.shape(3) > 0, "global_avg_pool2d: empty spatial or channel axis in ", py_shape_str(x));
  const auto& k = table_named<T>(isa);
  py::array_t<T> y({x.shape(0), x.shape(3)});
  k.global_avg_pool2d_forward(y.mutable_data(), x.data(), int(x.shape(0)), int(x.shape(1) * x.shape(2)), int(x.shape(3)));
  return y;
}

template <typename T>
py::array_t<T> gap_backward(carray<T> dy, Pair hw, const std::string& isa) {
  CNNBP_CHECK(dy.ndim() == 2, "global_avg_pool2d_backward: expected dy of rank 2 (N, C), got ", py_shape_str(dy));
  CNNBP_CHECK(hw.first > 0 && hw.second > 0, "global_avg_pool2d_backward: expected positive input size");
  const auto& k = table_named<T>(isa);
  py::array_t<T> dx({dy.shape(0), py::ssize_t(hw.first), py::ssize_t(hw.second), dy.shape(1)});
  k.global_avg_pool2d_backward(dx.mutable_data(), dy.data(), int(dy.shape(0)), hw.first * hw.second, int(dy.shape(1)));
  return dx;
}

template <typename T>
py::array_t<T> dense_forward(carray<T> x, carray<T> w, py::object b, const std::string& isa) {
  require_ndim(x, 2, "dense", "x", "(N, in_features)");
  require_ndim(w, 2, "dense", "kernel", "(in_features, units)");
  CNNBP_CHECK(w.shape(0) == x.shape(1), "dense: expected kernel with ", x.shape(1), " rows, got kernel shape ", py_shape_str(w));
  const int N = int(x.shape(0)), I = int(x.shape(1)), O = int(w.shape(1));
  carray<T> bias;
  const T* bp = nullptr;
  if (!b.is_none()) {
    bias = carray<T>::ensure(b);
    CNNBP_CHECK(bias && bias.ndim() == 1 && bias.shape(0) == O, "dense: expected bias of shape (", O, ",)");
    bp = bias.data();
  }
  const auto& k = table_named<T>(isa);
  py::array_t<T> y({py::ssize_t(N), py::ssize_t(O)});
  T* ws = scratch<T>(k.dense_workspace(N, I, O));
  {
    py::gil_scoped_release nogil;
    k.dense_forward(y.mutable_data(), x.data(), w.data(), bp, N, I, O, ws);
  }
  return y;
}

template <typename T>
py::array_t<T> dense_backward_data(carray<T> dy, carray<T> w, py::object add_to, const std::string& isa) {
  require_ndim(dy, 2, "dense_backward_data", "dy", "(N, units)");
  require_ndim(w, 2, "dense_backward_data", "kernel", "(in_features, units)");
  CNNBP_CHECK(w.shape(1) == dy.shape(1), "dense_backward_data: expected kernel with ", dy.shape(1), " columns, got ", py_shape_str(w));
  const int N = int(dy.shape(0)), I = int(w.shape(0)), O = int(w.shape(1));
  const auto& k = table_named<T>(isa);
  py::array_t<T> dx = gradient_out<T>({py::ssize_t(N), py::ssize_t(I)}, add_to, "dense_backward_data");
  T* ws = scratch<T>(k.dense_workspace(N, I, O));
  {
    py::gil_scoped_release nogil;
    k.dense_backward_data(dx.mutable_data(), dy.data(), w.data(), N, I, O, ws, !add_to.is_none());
  }
  return dx;
}

template <typename T>
py::tuple dense_backward_weight(carray<T> dy, carray<T> x, bool with_bias, const std::string& isa) {
  require_ndim(dy, 2, "dense_backward_weight", "dy", "(N, units)");
  require_ndim(x, 2, "dense_backward_weight", "x", "(N, in_features)");
  CNNBP_CHECK(dy.shape(0) == x.shape(0), "dense_backward_weight: dy has ", dy.shape(0), " rows but x has ", x.shape(0));
  const int N = int(x.shape(0)), I = int(x.shape(1)), O = int(dy.shape(1));
  const auto& k = table_named<T>(isa);
  py::array_t<T> dw({py::ssize_t(I), py::ssize_t(O)});
  py::array_t<T> db({py::ssize_t(O)});
  T* ws = scratch<T>(k.dense_workspace(N, I, O));
  {
    py::gil_scoped_release nogil;
    k.dense_backward_weight(dw.mutable_data(), with_bias ? db.mutable_data() : nullptr, dy.data(), x.data(), N, I, O,
                            ws);
  }
  return py::make_tuple(dw, with_bias ? py::object(db) : py::object(py::none()));
}

template <typename T>
py::array_t<T> activation_forward(carray<T> x, int kind, double alpha, const std::string& isa) {
  CNNBP_CHECK(kind >= 0 && kind < kActKinds, "activation: unknown kind ", kind);
  const auto& k = table_named<T>(isa);
  py::array_t<T> y(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  if (Act(kind) == Act::softmax) {
    CNNBP_CHECK(x.ndim() >= 1 && x.shape(x.ndim() - 1) > 0, "softmax: expected a non-empty last axis, got shape ", py_shape_str(x));
    const int K = int(x.shape(x.ndim() - 1));
    k.softmax_forward(y.mutable_data(), x.data(), int(x.size() / K), K);
  } else {
    k.activation_forward(y.mutable_data(), x.data(), x.size(), Act(kind), T(alpha));
  }
  return y;
}

template <typename T>
py::array_t<T> activation_backward(carray<T> dy, carray<T> x, carray<T> y, int kind, double alpha, const std::string& isa) {
  CNNBP_CHECK(kind >= 0 && kind < kActKinds, "activation_backward: unknown kind ", kind);
  CNNBP_CHECK(array_shape(dy) == array_shape(x) && array_shape(dy) == array_shape(y),
              "activation_backward: dy, x and y must have the same shape, got ", py_shape_str(dy), ", ", py_shape_str(x),
              ", ", py_shape_str(y));
  const auto& k = table_named<T>(isa);
  py::array_t<T> dx(std::vector<py::ssize_t>(dy.shape(), dy.shape() + dy.ndim()));
  if (Act(kind) == Act::softmax) {
    CNNBP_CHECK(dy.ndim() >= 1 && dy.shape(dy.ndim() - 1) > 0, "softmax_backward: expected a non-empty last axis");
    const int K = int(dy.shape(dy.ndim() - 1));
    k.softmax_backward(dx.mutable_data(), dy.data(), y.data(), int(dy.size() / K), K);
  } else {
    k.activation_backward(dx.mutable_data(), dy.data(), x.data(), y.data(), dy.size(), Act(kind), T(alpha));
  }
  return dx;
}

template <typename T>
py::tuple dropout_forward(carray<T> x, double rate, uint64_t seed, uint64_t stream, const std::string& isa) {
  CNNBP_CHECK(rate >= 0.0 && rate < 1.0, "dropout: expected 0 <= rate < 1, got ", rate);
  const auto& k = table_named<T>(isa);
  std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
  py::array_t<T> y(shape), mask(shape);
  k.dropout_forward(y.mutable_data(), mask.mutable_data(), x.data(), x.size(), rate, seed, stream);
  return py::make_tuple(y, mask);
}

template <typename T>
py::array_t<T> dropout_backward(carray<T> dy, carray<T> mask, const std::string& isa) {
  CNNBP_CHECK(array_shape(dy) == array_shape(mask), "dropout_backward: dy and mask shapes differ: ", py_shape_str(dy), " vs ",
              py_shape_str(mask));
  const auto& k = table_named<T>(isa);
  py::array_t<T> dx(std::vector<py::ssize_t>(dy.shape(), dy.shape() + dy.ndim()));
  k.dropout_backward(dx.mutable_data(), dy.data(), mask.data(), dy.size());
  return dx;
}

template <typename T>
py::tuple loss(carray<T> pred, carray<T> target, int kind, double eps, double delta, const std::string& isa) {
  CNNBP_CHECK(kind >= 0 && kind < kLossKinds, "loss: unknown kind ", kind);
  CNNBP_CHECK(std::isfinite(delta) && delta > 0, "loss: expected delta > 0, got ", delta);
  CNNBP_CHECK(pred.ndim() == 2 && pred.shape(0) > 0 && pred.shape(1) > 0, "loss: expected predictions of shape (N, K), got ",
              py_shape_str(pred));
  const int N = int(pred.shape(0)), K = int(pred.shape(1));
  const LossKind lk = LossKind(kind);
  if (loss_is_sparse(lk)) {
    CNNBP_CHECK(target.ndim() == 1 && target.shape(0) == N, "loss: expected labels of shape (", N, ",), got ", py_shape_str(target));
    for (int n = 0; n < N; ++n) {
      const T t = target.data()[n];
      CNNBP_CHECK(t >= 0 && t < K && t == T(int64_t(t)), "loss: expected integer labels in [0, ", K, "), got ", double(t));
    }
  } else {
    CNNBP_CHECK(array_shape(target) == array_shape(pred), "loss: expected targets of shape ", py_shape_str(pred), ", got ",
                py_shape_str(target));
  }
  const auto& k = table_named<T>(isa);
  py::array_t<T> d({py::ssize_t(N), py::ssize_t(K)});
  const double l = k.loss(d.mutable_data(), pred.data(), target.data(), N, K, LossParams{lk, eps, delta});
  const bool logits = lk == LossKind::softmax_ce || lk == LossKind::sparse_softmax_ce || lk == LossKind::bce_logits;
  const int64_t correct = k.count_correct(pred.data(), target.data(), N, K, loss_is_sparse(lk), logits ? 0.0 : 0.5);
  return py::make_tuple(l, d, correct);
}

template <typename T>
py::array_t<double> metric_sums(carray<T> pred, carray<T> target, int kind, int k, double threshold, int class_id,
                                int bins, bool sparse, int logits, const std::string& isa) {
  CNNBP_CHECK(kind >= 0 && kind < kMetricKinds, "metric_sums: unknown kind ", kind);
  CNNBP_CHECK(pred.ndim() == 2 && pred.shape(0) > 0 && pred.shape(1) > 0,
              "metric_sums: expected predictions of shape (N, K), got ", py_shape_str(pred));
  CNNBP_CHECK(logits >= 0 && logits <= 2, "metric_sums: logits must be 0, 1 or 2, got ", logits);
  const int N = int(pred.shape(0)), K = int(pred.shape(1));
  if (sparse) {
    CNNBP_CHECK(target.ndim() == 1 && target.shape(0) == N, "metric_sums: expected labels of shape (", N, ",), got ",
                py_shape_str(target));
    for (int n = 0; n < N; ++n) {
      const T t = target.data()[n];
      CNNBP_CHECK(t >= 0 && t < K && t == T(int64_t(t)), "metric_sums: expected integer labels in [0, ", K, "), got ",
                  double(t));
    }
  } else {
    CNNBP_CHECK(array_shape(target) == array_shape(pred), "metric_sums: expected targets of shape ", py_shape_str(pred),
                ", got ", py_shape_str(target));
  }
  MetricSpec m;
  m.kind = MetricKind(kind);
  m.k = k;
  m.threshold = threshold;
  m.class_id = class_id;
  m.bins = bins;
  CNNBP_CHECK(k >= 1 && class_id >= -1 && class_id < K && bins > 1 && bins <= 100000,
              "metric_sums: bad k, class_id or bins");
  py::array_t<double> out(py::ssize_t(metric_size(m, K)));
  std::fill(out.mutable_data(), out.mutable_data() + out.size(), 0.0);
  table_named<T>(isa).metric_sums(out.mutable_data(), pred.data(), target.data(), N, K, sparse, logits, m);
  return out;
}

template <typename T>
using inplace = py::array_t<T, py::array::c_style>;

template <typename T>
void check_inplace(const inplace<T>& a, py::ssize_t n, const char* who, const char* what) {
  CNNBP_CHECK(a.size() == n, who, ": ", what, " has ", a.size(), " elements, expected ", n);
  CNNBP_CHECK(a.writeable(), who, ": ", what, " must be writeable");
}

template <typename T>
void sgd_update(inplace<T> p, carray<T> g, inplace<T> buf, double lr, double momentum, double wd, bool nesterov,
                const std::string& isa) {
  check_inplace(p, p.size(), "sgd_update", "params");
  CNNBP_CHECK(g.size() == p.size(), "sgd_update: grads has ", g.size(), " elements, params ", p.size());
  check_inplace(buf, p.size(), "sgd_update", "momentum buffer");
  const auto& k = table_named<T>(isa);
  k.sgd_update(p.mutable_data(), g.data(), buf.mutable_data(), p.size(), SgdParams{lr, momentum, wd, nesterov, 0.0});
}

template <typename T>
void adam_update(inplace<T> p, carray<T> g, inplace<T> m, inplace<T> v, double lr, double b1, double b2, double eps,
                 double wd, int64_t t, const std::string& isa) {
  check_inplace(p, p.size(), "adam_update", "params");
  CNNBP_CHECK(g.size() == p.size(), "adam_update: grads has ", g.size(), " elements, params ", p.size());
  check_inplace(m, p.size(), "adam_update", "m");
  check_inplace(v, p.size(), "adam_update", "v");
  CNNBP_CHECK(t >= 1, "adam_update: step t must be >= 1, got ", t);
  const auto& k = table_named<T>(isa);
  k.adam_update(p.mutable_data(), g.data(), m.mutable_data(), v.mutable_data(), p.size(), AdamParams{lr, b1, b2, eps, wd, t});
}

// ---- batch normalisation, merges, window copies ---------------------------------------------
template <typename T>
int64_t rows_of(const py::array& x, const char* who) {
  CNNBP_CHECK(x.ndim() >= 2 && x.shape(x.ndim() - 1) > 0, who, ": expected x of shape (..., C) with C > 0, got ",
              py_shape_str(x));
  return x.size() / x.shape(x.ndim() - 1);
}

// A (C,) vector argument, or None: ptr is null then (keep the struct alive while ptr is used).
template <typename T>
struct OptVec {
  carray<T> arr;
  const T* ptr = nullptr;
};
template <typename T>
OptVec<T> vector_or_none(py::object v, int64_t C, const char* who, const char* what) {
  OptVec<T> out;
  if (v.is_none()) return out;
  out.arr = carray<T>::ensure(v);
  CNNBP_CHECK(out.arr && out.arr.ndim() == 1 && out.arr.shape(0) == C, who, ": expected ", what, " of shape (", C,
              ",), got ", out.arr ? py_shape_str(out.arr) : std::string("a non-array"));
  out.ptr = out.arr.data();
  return out;
}

// The forward's per-channel map y = x*scale + shift (gamma, beta null: 1, 0).
template <typename T>
void bn_affine(const T* mean, const T* var, const T* gamma, const T* beta, double eps, int C, T* scale, T* shift) {
  for (int c = 0; c < C; ++c) {
    const T inv = T(1) / std::sqrt(var[c] + T(eps));
    scale[c] = (gamma ? gamma[c] : T(1)) * inv;
    shift[c] = (beta ? beta[c] : T(0)) - mean[c] * scale[c];
  }
}

template <typename T>
py::tuple batch_norm_forward(carray<T> x, py::object gamma, py::object beta, double eps, bool relu,
                             const std::string& isa) {
  const int64_t M = rows_of<T>(x, "batch_norm");
  const int C = int(x.shape(x.ndim() - 1));
  CNNBP_CHECK(eps > 0, "batch_norm: epsilon must be > 0, got ", eps);
  auto g = vector_or_none<T>(gamma, C, "batch_norm", "gamma");
  auto b = vector_or_none<T>(beta, C, "batch_norm", "beta");
  const auto& k = table_named<T>(isa);
  py::array_t<T> y(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim())), mean({py::ssize_t(C)}), var({py::ssize_t(C)});
  const int nt = get_num_threads();
  T* ws = scratch<T>(k.batchnorm_workspace(M, C, nt));
  std::vector<T> scale(C), shift(C);
  {
    py::gil_scoped_release nogil;
    ThreadScope pin(nt);
    k.batchnorm_stats(mean.mutable_data(), var.mutable_data(), x.data(), M, C, ws);
    bn_affine(mean.data(), var.data(), g.ptr, b.ptr, eps, C, scale.data(), shift.data());
    k.batchnorm_apply(y.mutable_data(), x.data(), scale.data(), shift.data(), nullptr, M, C, relu);
  }
  return py::make_tuple(y, mean, var);
}

template <typename T>
py::tuple batch_norm_backward(carray<T> dy, carray<T> x, carray<T> mean, carray<T> var, py::object gamma, double eps,
                              bool batch_stats, py::object y_relu, py::object beta, bool relu,
                              const std::string& isa) {
  const int64_t M = rows_of<T>(x, "batch_norm_backward");
  const int C = int(x.shape(x.ndim() - 1));
  CNNBP_CHECK(array_shape(dy) == array_shape(x), "batch_norm_backward: expected dy of shape ", py_shape_str(x), ", got ",
              py_shape_str(dy));
  vector_or_none<T>(py::object(mean), C, "batch_norm_backward", "mean");
  vector_or_none<T>(py::object(var), C, "batch_norm_backward", "var");
  auto g = vector_or_none<T>(gamma, C, "batch_norm_backward", "gamma");
  carray<T> y;
  const T* yp = nullptr;
  if (!y_relu.is_none()) {
    y = carray<T>::ensure(y_relu);
    CNNBP_CHECK(y && array_shape(y) == array_shape(x), "batch_norm_backward: expected y (the ReLU'd output) of shape ",
                py_shape_str(x), ", got ", y ? py_shape_str(y) : std::string("a non-array"));
    yp = y.data();
  }
  // relu without y: the mask comes from x through the forward's scale and shift (needs beta).
  auto b = vector_or_none<T>(beta, C, "batch_norm_backward", "beta");
  std::vector<T> rscale, rshift;
  if (relu && !yp) {
    rscale.resize(C);
    rshift.resize(C);
    bn_affine(mean.data(), var.data(), g.ptr, b.ptr, eps, C, rscale.data(), rshift.data());
  }
  const auto& k = table_named<T>(isa);
  py::array_t<T> dx(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim())), dg({py::ssize_t(C)}), db({py::ssize_t(C)});
  std::vector<T> invstd(C);
  for (int c = 0; c < C; ++c) invstd[c] = T(1) / std::sqrt(var.data()[c] + T(eps));
  const int nt = get_num_threads();
  T* ws = scratch<T>(k.batchnorm_workspace(M, C, nt));
  {
    py::gil_scoped_release nogil;
    ThreadScope pin(nt);
    k.batchnorm_backward(dx.mutable_data(), dg.mutable_data(), db.mutable_data(), dy.data(), yp,
                         rscale.empty() ? nullptr : rscale.data(), rshift.empty() ? nullptr : rshift.data(), nullptr,
                         nullptr, false, x.data(), mean.data(),
                         invstd.data(), g.ptr, M, C, batch_stats, ws, false);
  }
  return py::make_tuple(dx, dg, db);
}

template <typename T>
std::vector<carray<T>> same_shaped(const py::list& xs, const char* who) {
  CNNBP_CHECK(xs.size() >= 2, who, ": expected at least 2 arrays, got ", xs.size());
  std::vector<carray<T>> out;
  for (auto h : xs) {
    carray<T> a = carray<T>::ensure(h);
    CNNBP_CHECK(a, who, ": expected arrays");
    if (!out.empty())
      CNNBP_CHECK(array_shape(a) == array_shape(out[0]), who, ": shapes differ: ", py_shape_str(out[0]), " and ",
                  py_shape_str(a));
    out.push_back(a);
  }
  return out;
}

MergeOp merge_op(int op) {
  CNNBP_CHECK(op >= 0 && op <= 4, "merge: op must be 0..4 (add, subtract, multiply, average, maximum), got ", op);
  return MergeOp(op);
}

template <typename T>
py::array_t<T> merge_forward(py::list xs, int op, bool relu, const std::string& isa) {
  auto a = same_shaped<T>(xs, "merge");
  CNNBP_CHECK(op != 1 || a.size() == 2, "merge: subtract takes 2 arrays, got ", a.size());
  CNNBP_CHECK(!relu || merge_op(op) != MergeOp::maximum, "merge: no fused ReLU for maximum");
  std::vector<const T*> p;
  for (auto& x : a) p.push_back(x.data());
  py::array_t<T> y(std::vector<py::ssize_t>(a[0].shape(), a[0].shape() + a[0].ndim()));
  table_named<T>(isa).merge_forward(y.mutable_data(), p.data(), int(p.size()), y.size(), merge_op(op), relu);
  return y;
}

template <typename T>
py::array_t<T> merge_backward(carray<T> dy, py::list xs, carray<T> y, int op, int which, bool relu,
                              const std::string& isa) {
  auto a = same_shaped<T>(xs, "merge_backward");
  CNNBP_CHECK(array_shape(dy) == array_shape(a[0]) && array_shape(y) == array_shape(a[0]),
              "merge_backward: dy and y must have the inputs' shape ", py_shape_str(a[0]));
  CNNBP_CHECK_INDEX(which >= 0 && which < int(a.size()), "merge_backward: which must be in [0, ", a.size(), ")");
  CNNBP_CHECK(!relu || merge_op(op) != MergeOp::maximum, "merge_backward: no fused ReLU for maximum");
  std::vector<const T*> p;
  for (auto& x : a) p.push_back(x.data());
  py::array_t<T> dx(std::vector<py::ssize_t>(a[0].shape(), a[0].shape() + a[0].ndim()));
  table_named<T>(isa).merge_backward(dx.mutable_data(), dy.data(), p.data(), y.data(), int(p.size()), which, dx.size(),
                                     merge_op(op), false, relu);
  return dx;
}

template <typename T>
py::array_t<T> concat_forward(py::list xs, const std::string& isa) {
  CNNBP_CHECK(xs.size() >= 1, "concatenate: expected arrays");
  std::vector<carray<T>> a;
  int64_t ctot = 0;
  for (auto h : xs) {
    a.push_back(carray<T>::ensure(h));
    CNNBP_CHECK(a.back() && a.back().ndim() >= 1, "concatenate: expected arrays of rank >= 1");
    auto s0 = array_shape(a[0]), s = array_shape(a.back());
    CNNBP_CHECK(s0.size() == s.size() && std::equal(s0.begin(), s0.end() - 1, s.begin()),
                "concatenate: shapes must match but in the last axis: ", py_shape_str(a[0]), " and ", py_shape_str(a.back()));
    ctot += a.back().shape(a.back().ndim() - 1);
  }
  std::vector<py::ssize_t> shape(a[0].shape(), a[0].shape() + a[0].ndim());
  shape.back() = py::ssize_t(ctot);
  py::array_t<T> y(shape);
  const auto& k = table_named<T>(isa);
  int off = 0;
  for (auto& x : a) {
    const int c = int(x.shape(x.ndim() - 1));
    k.concat_forward(y.mutable_data(), x.data(), c ? x.size() / c : 0, c, int(ctot), off);
    off += c;
  }
  return y;
}

template <typename T>
py::array_t<T> concat_backward(carray<T> dy, int off, int c, const std::string& isa) {
  CNNBP_CHECK(dy.ndim() >= 1, "concatenate_backward: expected dy of rank >= 1");
  const int ctot = int(dy.shape(dy.ndim() - 1));
  CNNBP_CHECK(off >= 0 && c > 0 && off + c <= ctot, "concatenate_backward: slice [", off, ", ", off + c,
              ") outside ", ctot, " channels");
  std::vector<py::ssize_t> shape(dy.shape(), dy.shape() + dy.ndim());
  shape.back() = c;
  py::array_t<T> dx(shape);
  table_named<T>(isa).concat_backward(dx.mutable_data(), dy.data(), dy.size() / ctot, c, ctot, off, false);
  return dx;
}

// to_big false: the window [top:top+h, left:left+w] of x (cropping); true: x placed at (top, left)
// in zeros of size (H, W) (zero padding).
template <typename T>
py::array_t<T> window_copy(carray<T> x, int top, int left, Pair other_hw, bool to_big, const std::string& isa) {
  require_ndim(x, 4, "window_copy", "x", "(N, H, W, C)");
  const int N = int(x.shape(0)), h = int(x.shape(1)), w = int(x.shape(2)), C = int(x.shape(3));
  const int oh = other_hw.first, ow = other_hw.second;
  const auto& k = table_named<T>(isa);
  if (to_big) {
    CNNBP_CHECK(top >= 0 && left >= 0 && top + h <= oh && left + w <= ow, "window_copy: window outside the output");
    py::array_t<T> y({py::ssize_t(N), py::ssize_t(oh), py::ssize_t(ow), py::ssize_t(C)});
    k.window_to_big(y.mutable_data(), x.data(), N, oh, ow, h, w, C, top, left, false);
    return y;
  }
  CNNBP_CHECK(top >= 0 && left >= 0 && oh > 0 && ow > 0 && top + oh <= h && left + ow <= w,
              "window_copy: window outside the input");
  py::array_t<T> y({py::ssize_t(N), py::ssize_t(oh), py::ssize_t(ow), py::ssize_t(C)});
  k.window_to_small(y.mutable_data(), x.data(), N, h, w, oh, ow, C, top, left, false);
  return y;
}

template <typename T>
py::tuple gmp_forward(carray<T> x, const std::string& isa) {
  require_ndim(x, 4, "global_max_pool2d", "x", "(N, H, W, C)");
  CNNBP_CHECK(x.shape(1) > 0 && x.shape(2) > 0 && x.shape(3) > 0, "global_max_pool2d: empty axis in ", py_shape_str(x));
  py::array_t<T> y({x.shape(0), x.shape(3)});
  py::array_t<int32_t> am({x.shape(0), x.shape(3)});
  table_named<T>(isa).global_max_pool2d_forward(y.mutable_data(), am.mutable_data(), x.data(), int(x.shape(0)),
                                                int(x.shape(1) * x.shape(2)), int(x.shape(3)));
  return py::make_tuple(y, am);
}

template <typename T>
py::array_t<T> gmp_backward(carray<T> dy, py::array_t<int32_t, py::array::c_style | py::array::forcecast> am, Pair hw,
                            const std::string& isa) {
  CNNBP_CHECK(dy.ndim() == 2 && am.ndim() == 2 && am.shape(0) == dy.shape(0) && am.shape(1) == dy.shape(1),
              "global_max_pool2d_backward: expected dy and argmax of shape (N, C)");
  const int HW = hw.first * hw.second;
  for (py::ssize_t i = 0; i < am.size(); ++i)
    CNNBP_CHECK_INDEX(am.data()[i] >= 0 && am.data()[i] < HW, "global_max_pool2d_backward: argmax out of range");
  py::array_t<T> dx({dy.shape(0), py::ssize_t(hw.first), py::ssize_t(hw.second), dy.shape(1)});
  table_named<T>(isa).global_max_pool2d_backward(dx.mutable_data(), dy.data(), am.data(), int(dy.shape(0)), HW,
                                                 int(dy.shape(1)), false);
  return dx;
}

template <typename T>
void bind_typed(py::module_& m, const std::string& sfx) {
  const auto isa = py::arg("isa") = std::string();
  const auto algo = py::arg("algo") = std::string();
  const auto fp = py::call_guard<FpStateScope>();  // the caller's MXCSR, flags included, as it was
  m.def(("conv2d_forward" + sfx).c_str(), &conv2d_forward<T>, fp, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("strides"),
        py::arg("dilation"), py::arg("pad_mode"), py::arg("pads"), py::arg("relu") = false, isa,
        algo, "y = conv2d(x, w) + b (then ReLU when relu); x NHWC, w (kh, kw, C, K).");
  m.def(("conv2d_backward_data" + sfx).c_str(), &conv2d_backward_data<T>, fp, py::arg("dy"), py::arg("w"), py::arg("input_hw"),
        py::arg("strides"), py::arg("dilation"), py::arg("pad_mode"), py::arg("pads"), py::arg("add_to"), isa,
        algo, "Gradient of conv2d w.r.t. x (added to a copy of add_to when given).");
  m.def(("conv2d_backward_weight" + sfx).c_str(), &conv2d_backward_weight<T>, fp, py::arg("dy"), py::arg("x"),
        py::arg("kernel_size"), py::arg("strides"), py::arg("dilation"), py::arg("pad_mode"), py::arg("pads"),
        py::arg("with_bias"), isa, algo, "Gradients of conv2d w.r.t. kernel and bias: (dw, db).");
  m.def(("max_pool2d_forward" + sfx).c_str(), &max_pool2d_forward<T>, fp, py::arg("x"), py::arg("pool"), py::arg("strides"),
        py::arg("pad_mode"), isa, "Max pooling: (y, argmax) with argmax the flat input position ih*W+iw.");
  m.def(("max_pool2d_backward" + sfx).c_str(), &max_pool2d_backward<T>, fp, py::arg("dy"), py::arg("argmax"), py::arg("x"),
        py::arg("pool"), py::arg("strides"), py::arg("pad_mode"), py::arg("relu_y") = py::none(), isa,
        "Gradient of max pooling w.r.t. x; with relu_y (its output y), times relu'(x) as well.");
  m.def(("avg_pool2d_forward" + sfx).c_str(), &avg_pool2d_forward<T>, fp, py::arg("x"), py::arg("pool"), py::arg("strides"),
        py::arg("pad_mode"), isa, "Average pooling (padding excluded from the count).");
  m.def(("avg_pool2d_backward" + sfx).c_str(), &avg_pool2d_backward<T>, fp, py::arg("dy"), py::arg("x"), py::arg("pool"),
        py::arg("strides"), py::arg("pad_mode"), isa, "Gradient of average pooling w.r.t. x.");
  m.def(("global_avg_pool2d_forward" + sfx).c_str(), &gap_forward<T>, fp, py::arg("x"), isa, "Mean over H and W.");
  m.def(("global_avg_pool2d_backward" + sfx).c_str(), &gap_backward<T>, fp, py::arg("dy"), py::arg("input_hw"), isa,
        "Gradient of global average pooling.");
  m.def(("global_max_pool2d_forward" + sfx).c_str(), &gmp_forward<T>, fp, py::arg("x"), isa, "(max over H and W, arg-max).");
  m.def(("global_max_pool2d_backward" + sfx).c_str(), &gmp_backward<T>, fp, py::arg("dy"), py::arg("argmax"),
        py::arg("input_hw"), isa, "Gradient of global max pooling.");
  m.def(("batch_norm_forward" + sfx).c_str(), &batch_norm_forward<T>, fp, py::arg("x"), py::arg("gamma"), py::arg("beta"),
        py::arg("epsilon"), py::arg("relu"), isa,
        "Training-mode batch normalisation over the last axis, optionally ReLU'd: (y, mean, biased var).");
  m.def(("batch_norm_backward" + sfx).c_str(), &batch_norm_backward<T>, fp, py::arg("dy"), py::arg("x"), py::arg("mean"),
        py::arg("var"), py::arg("gamma"), py::arg("epsilon"), py::arg("batch_stats"), py::arg("y_relu"), py::arg("beta"),
        py::arg("relu"), isa,
        "(dx, dgamma, dbeta); y_relu: the output of a forward with ReLU fused (masks dy), or None; relu "
        "without y_relu: the mask is recomputed from x with gamma and beta.");
  m.def(("merge_forward" + sfx).c_str(), &merge_forward<T>, fp, py::arg("xs"), py::arg("op"), py::arg("relu"), isa,
        "Elementwise merge, optionally ReLU'd.");
  m.def(("merge_backward" + sfx).c_str(), &merge_backward<T>, fp, py::arg("dy"), py::arg("xs"), py::arg("y"), py::arg("op"),
        py::arg("which"), py::arg("relu"), isa,
        "Gradient of a merge for input `which` (relu: the forward was ReLU'd and y is its output).");
  m.def(("concat_forward" + sfx).c_str(), &concat_forward<T>, fp, py::arg("xs"), isa, "Concatenate along the last axis.");
  m.def(("concat_backward" + sfx).c_str(), &concat_backward<T>, fp, py::arg("dy"), py::arg("offset"), py::arg("channels"),
        isa, "One input's slice of a concatenation's gradient.");
  m.def(("window_copy" + sfx).c_str(), &window_copy<T>, fp, py::arg("x"), py::arg("top"), py::arg("left"),
        py::arg("other_hw"), py::arg("to_big"), isa, "Crop a window (to_big False) or zero-pad into one (True).");
  m.def(("dense_forward" + sfx).c_str(), &dense_forward<T>, fp, py::arg("x"), py::arg("w"), py::arg("b"), isa, "y = x @ w + b.");
  m.def(("dense_backward_data" + sfx).c_str(), &dense_backward_data<T>, fp, py::arg("dy"), py::arg("w"), py::arg("add_to"), isa,
        "dx = dy @ w.T (+ add_to when given).");
  m.def(("dense_backward_weight" + sfx).c_str(), &dense_backward_weight<T>, fp, py::arg("dy"), py::arg("x"), py::arg("with_bias"),
        isa, "(dw, db) = (x.T @ dy, dy.sum(0)).");
  m.def(("activation_forward" + sfx).c_str(), &activation_forward<T>, fp, py::arg("x"), py::arg("kind"), py::arg("alpha"), isa,
        "Elementwise activation (softmax: over the last axis).");
  m.def(("activation_backward" + sfx).c_str(), &activation_backward<T>, fp, py::arg("dy"), py::arg("x"), py::arg("y"),
        py::arg("kind"), py::arg("alpha"), isa, "Gradient of an activation.");
  m.def(("dropout_forward" + sfx).c_str(), &dropout_forward<T>, fp, py::arg("x"), py::arg("rate"), py::arg("seed"),
        py::arg("stream"), isa, "Inverted dropout: (y, mask).");
  m.def(("dropout_backward" + sfx).c_str(), &dropout_backward<T>, fp, py::arg("dy"), py::arg("mask"), isa, "dy * mask.");
  m.def(("loss" + sfx).c_str(), &loss<T>, fp, py::arg("pred"), py::arg("target"), py::arg("kind"), py::arg("eps"), py::arg("delta"), isa,
        "(mean loss, d loss / d pred, correct count).");
  m.def(("metric_sums" + sfx).c_str(), &metric_sums<T>, fp, py::arg("pred"), py::arg("target"), py::arg("kind"), py::arg("k"),
        py::arg("threshold"), py::arg("class_id"), py::arg("bins"), py::arg("sparse"), py::arg("logits"), isa,
        "A metric's sums over one batch (kernels/metric.h).");
  m.def(("sgd_update" + sfx).c_str(), &sgd_update<T>, fp, py::arg("params"), py::arg("grads"), py::arg("buf"), py::arg("lr"),
        py::arg("momentum"), py::arg("weight_decay"), py::arg("nesterov"), isa, "One SGD step, in place.");
  m.def(("adam_update" + sfx).c_str(), &adam_update<T>, fp, py::arg("params"), py::arg("grads"), py::arg("m"), py::arg("v"),
        py::arg("lr"), py::arg("beta_1"), py::arg("beta_2"), py::arg("epsilon"), py::arg("weight_decay"), py::arg("t"), isa,
        "One Adam(W) step, in place.");
}

}  // namespace

void bind_ops_module(py::module_& m) {
  bind_typed<float>(m, "_f32");
  m.def("conv2d_algorithms", &conv2d_algorithms, py::call_guard<FpStateScope>(), py::arg("x_shape"),
        py::arg("kernel_shape"), py::arg("strides"), py::arg("dilation"), py::arg("pad_mode"), py::arg("pads"),
        py::arg("isa") = std::string(), py::arg("algo") = std::string(),
        "The algorithm of each conv2d pass for this float32 layer shape: direct, winograd2 or winograd4.");
  bind_typed<double>(m, "_f64");
  m.def("same_padding", [](int in, int k, int s, int d) {
    CNNBP_CHECK(in > 0 && k > 0 && s > 0 && d > 0, "same_padding: expected positive sizes");
    int a, b;
    same_padding(in, k, s, d, &a, &b);
    return py::make_tuple(a, b);
  }, py::arg("size"), py::arg("kernel"), py::arg("stride"), py::arg("dilation"), "Keras 'same' padding (before, after).");
}

}  // namespace cnnbp
