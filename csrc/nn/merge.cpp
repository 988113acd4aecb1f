// Layers with several inputs: elementwise merges (Add, Subtract, Multiply, Average, Maximum) and
// Concatenate along the channel (last) axis. Their backward adds into input gradients that other
// readers already wrote (accumulates()), so a residual connection costs no extra pass.
#include "core/check.h"
#include "nn/registry.h"

namespace cnnbp {

namespace {

template <typename T>
void set_multi_shapes(Layer<T>& l, const std::string& name, const std::vector<Shape>& in, const Shape& out) {
  l.name = name;
  l.in_shapes = in;
  l.in_shape = in[0];
  l.out_shape = out;
  l.in_size = checked_numel(name, in[0]);
  l.out_size = checked_numel(name, out);
}

template <typename T>
class MergeLayer : public Layer<T> {
 public:
  MergeLayer(const std::string& name, const char* kind, MergeOp op, const std::vector<Shape>& in,
             const std::vector<std::string>& in_names, Act act)
      : kind_(kind), op_(op), act_(act) {
    // Maximum's backward compares the inputs with the output, which a fused ReLU would change.
    CNNBP_CHECK(act == Act::linear || (act == Act::relu && op != MergeOp::maximum), name, " (", kind,
                "): only a ReLU can be fused in (activation 'linear' or 'relu'; none for Maximum)");
    for (size_t j = 1; j < in.size(); ++j)
      CNNBP_CHECK(in[j] == in[0], name, " (", kind, "): inputs must have equal shapes, got ", shape_str(in[0], true),
                  " from '", in_names.at(0), "' and ", shape_str(in[j], true), " from '", in_names.at(j), "'");
    set_multi_shapes(*this, name, in, in[0]);
  }
  const char* kind() const override { return kind_; }
  bool accumulates() const override { return true; }
  bool backward_reads_inputs() const override { return op_ == MergeOp::multiply || op_ == MergeOp::maximum; }
  bool backward_reads_output() const override { return op_ == MergeOp::maximum || act_ == Act::relu; }
  void forward_n(const KernelTable<T>& k, const PassContext&, int N, const T* const* xs, T* y, T*, bool) override {
    const int64_t n = int64_t(N) * this->out_size;
    k.merge_forward(y, xs, int(this->in_shapes.size()), n, op_, act_ == Act::relu);
  }
  void backward_n(const KernelTable<T>& k, const PassContext&, int N, const T* const* xs, const T* y, T* dy,
                  T* const* dxs, const bool* accumulate, T*) override {
    const int n = int(this->in_shapes.size());
    for (int j = 0; j < n; ++j)  // a fused ReLU masks dy inside (y > 0 exactly where the merge was)
      if (dxs[j])
        k.merge_backward(dxs[j], dy, xs, y, n, j, int64_t(N) * this->out_size, op_, accumulate[j], act_ == Act::relu);
  }

 private:
  const char* kind_;
  MergeOp op_;
  Act act_;
};

template <typename T>
class ConcatenateLayer : public Layer<T> {
 public:
  ConcatenateLayer(const std::string& name, int axis, const std::vector<Shape>& in,
                   const std::vector<std::string>& in_names) {
    const int rank = int(in[0].size());
    CNNBP_CHECK(axis == -1 || axis == rank, name, " (Concatenate): only the last axis (axis=-1, the channels) is "
                "supported, got axis=", axis, " for inputs of shape ", shape_str(in[0], true));
    Shape out = in[0];
    out.back() = 0;
    for (size_t j = 0; j < in.size(); ++j) {
      bool ok = in[j].size() == in[0].size();
      for (size_t d = 0; ok && d + 1 < in[0].size(); ++d) ok = in[j][d] == in[0][d];
      CNNBP_CHECK(ok, name, " (Concatenate): inputs must match in every axis but the last, got ",
                  shape_str(in[0], true), " from '", in_names.at(0), "' and ", shape_str(in[j], true), " from '",
                  in_names.at(j), "'");
      CNNBP_CHECK(int64_t(out.back()) + in[j].back() <= INT32_MAX, name, " (Concatenate): too many channels");
      out.back() += in[j].back();
    }
    set_multi_shapes(*this, name, in, out);
    rows_ = shape_numel(in[0]) / in[0].back();
  }
  const char* kind() const override { return "Concatenate"; }
  bool backward_reads_inputs() const override { return false; }
  bool backward_reads_output() const override { return false; }
  bool accumulates() const override { return true; }
  void forward_n(const KernelTable<T>& k, const PassContext&, int N, const T* const* xs, T* y, T*, bool) override {
    int off = 0;
    const int ctot = this->out_shape.back();
    for (size_t j = 0; j < this->in_shapes.size(); ++j) {
      const int cj = this->in_shapes[j].back();
      k.concat_forward(y, xs[j], N * rows_, cj, ctot, off);
      off += cj;
    }
  }
  void backward_n(const KernelTable<T>& k, const PassContext&, int N, const T* const*, const T*, T* dy,
                  T* const* dxs, const bool* accumulate, T*) override {
    int off = 0;
    const int ctot = this->out_shape.back();
    for (size_t j = 0; j < this->in_shapes.size(); ++j) {
      const int cj = this->in_shapes[j].back();
      if (dxs[j]) k.concat_backward(dxs[j], dy, N * rows_, cj, ctot, off, accumulate[j]);
      off += cj;
    }
  }

 private:
  int64_t rows_ = 1;
};

}  // namespace

template <typename T>
std::unique_ptr<Layer<T>> make_merge(const std::string& name, const char* kind, MergeOp op, const std::vector<Shape>& in,
                                     const std::vector<std::string>& in_names, Act act) {
  return std::make_unique<MergeLayer<T>>(name, kind, op, in, in_names, act);
}
template <typename T>
std::unique_ptr<Layer<T>> make_concatenate(const std::string& name, int axis, const std::vector<Shape>& in,
                                           const std::vector<std::string>& in_names) {
  return std::make_unique<ConcatenateLayer<T>>(name, axis, in, in_names);
}

#define CNNBP_INSTANTIATE(T)                                                                                     \
  template std::unique_ptr<Layer<T>> make_merge<T>(const std::string&, const char*, MergeOp,                     \
                                                   const std::vector<Shape>&, const std::vector<std::string>&,  \
                                                   Act);                                                        \
  template std::unique_ptr<Layer<T>> make_concatenate<T>(const std::string&, int, const std::vector<Shape>&,     \
                                                         const std::vector<std::string>&);
CNNBP_INSTANTIATE(float)
CNNBP_INSTANTIATE(double)

}  // namespace cnnbp
