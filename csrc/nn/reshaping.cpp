// Reshaping layers: ZeroPadding2D and Cropping2D (a window copy each way), Identity and Reshape
// (views), Permute (a transposing copy), UpSampling2D (nearest or bilinear).
#include "core/check.h"
#include "nn/layers.h"
#include "nn/registry.h"

namespace cnnbp {

namespace {

template <typename T>
class PadCropLayer : public Layer<T> {
 public:
  PadCropLayer(const std::string& name, const Shape& in, const std::vector<int>& p, bool crop) : crop_(crop) {
    const char* kind = crop ? "Cropping2D" : "ZeroPadding2D";
    require_rank3(name, kind, in);
    for (int v : p) CNNBP_CHECK(v >= 0, name, " (", kind, "): sizes must be non-negative, got ", v);
    top_ = p[0];
    left_ = p[2];
    const int64_t dh = int64_t(p[0]) + p[1], dw = int64_t(p[2]) + p[3];
    const int64_t H = crop ? in[0] - dh : in[0] + dh, W = crop ? in[1] - dw : in[1] + dw;
    CNNBP_CHECK(H > 0 && W > 0, name, " (", kind, "): cropping ", p[0], "+", p[1], " rows and ", p[2], "+", p[3],
                " columns leaves nothing of an input of shape ", shape_str(in, true));
    CNNBP_CHECK(H <= INT32_MAX && W <= INT32_MAX, name, " (", kind, "): the padded size ", H, "x", W,
                " exceeds 2**31 - 1 along an axis (input ", shape_str(in, true), ")");
    set_shapes(*this, name, in, Shape{int(H), int(W), in[2]});
  }
  const char* kind() const override { return crop_ ? "Cropping2D" : "ZeroPadding2D"; }
  bool backward_reads_inputs() const override { return false; }
  bool backward_reads_output() const override { return false; }
  bool accumulates() const override { return true; }
  void forward(const KernelTable<T>& k, const PassContext&, int N, const T* x, T* y, T*, bool) override {
    const Shape &i = this->in_shape, &o = this->out_shape;
    if (crop_) k.window_to_small(y, x, N, i[0], i[1], o[0], o[1], i[2], top_, left_, false);
    else k.window_to_big(y, x, N, o[0], o[1], i[0], i[1], i[2], top_, left_, false);
  }
  void backward_n(const KernelTable<T>& k, const PassContext&, int N, const T* const*, const T*, T* dy,
                  T* const* dxs, const bool* accumulate, T*) override {
    if (!dxs[0]) return;
    const Shape &i = this->in_shape, &o = this->out_shape;
    if (crop_) k.window_to_big(dxs[0], dy, N, i[0], i[1], o[0], o[1], i[2], top_, left_, accumulate[0]);
    else k.window_to_small(dxs[0], dy, N, o[0], o[1], i[0], i[1], i[2], top_, left_, accumulate[0]);
  }

 private:
  bool crop_;
  int top_ = 0, left_ = 0;
};

template <typename T>
class IdentityLayer : public Layer<T> {
 public:
  IdentityLayer(const std::string& name, const Shape& in) { set_shapes(*this, name, in, in); }
  const char* kind() const override { return "Identity"; }
  bool is_alias() const override { return true; }
  void forward(const KernelTable<T>&, const PassContext&, int, const T*, T*, T*, bool) override {}
  void backward(const KernelTable<T>&, const PassContext&, int, const T*, const T*, T*, T*, T*) override {}
};

template <typename T>
class ReshapeLayer : public Layer<T> {
 public:
  ReshapeLayer(const std::string& name, const Shape& in, const Shape& out) {
    CNNBP_CHECK(!out.empty(), name, " (Reshape): expected a target shape");
    for (int d : out) CNNBP_CHECK(d > 0, name, " (Reshape): sizes must be positive, got ", shape_str(out));
    const int64_t a = checked_numel(name + " (Reshape)", in), b = checked_numel(name + " (Reshape)", out);
    CNNBP_CHECK(a == b, name, " (Reshape): cannot reshape ", shape_str(in, true), " (", a, " values per sample) to ",
                shape_str(out, true), " (", b, ")");
    set_shapes(*this, name, in, out);
  }
  const char* kind() const override { return "Reshape"; }
  bool is_alias() const override { return true; }
  void forward(const KernelTable<T>&, const PassContext&, int, const T*, T*, T*, bool) override {}
  void backward(const KernelTable<T>&, const PassContext&, int, const T*, const T*, T*, T*, T*) override {}
};

template <typename T>
class PermuteLayer : public Layer<T> {
 public:
  PermuteLayer(const std::string& name, const Shape& in, const std::vector<int>& dims) {
    const int r = int(in.size());
    CNNBP_CHECK(r >= 1 && r <= 4, name, " (Permute): inputs of 1 to 4 axes per sample, got ", shape_str(in, true));
    CNNBP_CHECK(int(dims.size()) == r, name, " (Permute): dims must list ", r, " axes (1-based), got ", dims.size());
    std::vector<int> seen(r, 0);
    Shape out;
    for (int j = 0; j < r; ++j) {
      CNNBP_CHECK(dims[j] >= 1 && dims[j] <= r && !seen[dims[j] - 1], name,
                  " (Permute): dims must be a permutation of 1..", r);
      seen[dims[j] - 1] = 1;
      perm_[j] = dims[j] - 1;
      out.push_back(in[perm_[j]]);
    }
    for (int j = 0; j < r; ++j) {
      in_dims_[j] = in[j];
      out_dims_[j] = out[j];
      inv_[perm_[j]] = j;
    }
    rank_ = r;
    set_shapes(*this, name, in, out);
  }
  const char* kind() const override { return "Permute"; }
  bool backward_reads_inputs() const override { return false; }
  bool backward_reads_output() const override { return false; }
  bool accumulates() const override { return true; }
  void forward(const KernelTable<T>& k, const PassContext&, int N, const T* x, T* y, T*, bool) override {
    k.permute(y, x, N, rank_, in_dims_, perm_, false);
  }
  void backward_n(const KernelTable<T>& k, const PassContext&, int N, const T* const*, const T*, T* dy,
                  T* const* dxs, const bool* accumulate, T*) override {
    if (dxs[0]) k.permute(dxs[0], dy, N, rank_, out_dims_, inv_, accumulate[0]);
  }

 private:
  int rank_ = 0;
  int perm_[4] = {0, 1, 2, 3}, inv_[4] = {0, 1, 2, 3}, in_dims_[4] = {1, 1, 1, 1}, out_dims_[4] = {1, 1, 1, 1};
};

template <typename T>
class UpSamplingLayer : public Layer<T> {
 public:
  UpSamplingLayer(const std::string& name, const Shape& in, int sh, int sw, bool bilinear) {
    require_rank3(name, "UpSampling2D", in);
    CNNBP_CHECK(sh >= 1 && sw >= 1, name, " (UpSampling2D): size must be >= 1, got ", sh, "x", sw);
    const int64_t H = int64_t(in[0]) * sh, W = int64_t(in[1]) * sw;
    CNNBP_CHECK(H <= INT32_MAX && W <= INT32_MAX, name, " (UpSampling2D): the output size ", H, "x", W,
                " exceeds 2**31 - 1 along an axis");
    p_ = {0, in[0], in[1], in[2], sh, sw, bilinear};
    set_shapes(*this, name, in, Shape{int(H), int(W), in[2]});
  }
  const char* kind() const override { return "UpSampling2D"; }
  bool backward_reads_inputs() const override { return false; }
  bool backward_reads_output() const override { return false; }
  bool accumulates() const override { return true; }
  void forward(const KernelTable<T>& k, const PassContext&, int N, const T* x, T* y, T*, bool) override {
    ResizeParams p = p_;
    p.N = N;
    k.resize_forward(y, x, p);
  }
  void backward_n(const KernelTable<T>& k, const PassContext&, int N, const T* const*, const T*, T* dy,
                  T* const* dxs, const bool* accumulate, T*) override {
    if (!dxs[0]) return;
    ResizeParams p = p_;
    p.N = N;
    k.resize_backward(dxs[0], dy, p, accumulate[0]);
  }

 private:
  ResizeParams p_;
};

}  // namespace

template <typename T>
std::unique_ptr<Layer<T>> make_reshape(const std::string& name, const Shape& in, const Shape& out) {
  return std::make_unique<ReshapeLayer<T>>(name, in, out);
}
template <typename T>
std::unique_ptr<Layer<T>> make_permute(const std::string& name, const Shape& in, const std::vector<int>& dims) {
  return std::make_unique<PermuteLayer<T>>(name, in, dims);
}
template <typename T>
std::unique_ptr<Layer<T>> make_upsampling2d(const std::string& name, const Shape& in, int sh, int sw, bool bilinear) {
  return std::make_unique<UpSamplingLayer<T>>(name, in, sh, sw, bilinear);
}
template std::unique_ptr<Layer<float>> make_reshape<float>(const std::string&, const Shape&, const Shape&);
template std::unique_ptr<Layer<double>> make_reshape<double>(const std::string&, const Shape&, const Shape&);
template std::unique_ptr<Layer<float>> make_permute<float>(const std::string&, const Shape&, const std::vector<int>&);
template std::unique_ptr<Layer<double>> make_permute<double>(const std::string&, const Shape&, const std::vector<int>&);
template std::unique_ptr<Layer<float>> make_upsampling2d<float>(const std::string&, const Shape&, int, int, bool);
template std::unique_ptr<Layer<double>> make_upsampling2d<double>(const std::string&, const Shape&, int, int, bool);

template <typename T>
std::unique_ptr<Layer<T>> make_pad_crop2d(const std::string& name, const Shape& in, const std::vector<int>& pads,
                                          bool crop) {
  return std::make_unique<PadCropLayer<T>>(name, in, pads, crop);
}
template <typename T>
std::unique_ptr<Layer<T>> make_identity(const std::string& name, const Shape& in) {
  return std::make_unique<IdentityLayer<T>>(name, in);
}

template std::unique_ptr<Layer<float>> make_pad_crop2d<float>(const std::string&, const Shape&, const std::vector<int>&, bool);
template std::unique_ptr<Layer<double>> make_pad_crop2d<double>(const std::string&, const Shape&, const std::vector<int>&,
                                                                bool);
template std::unique_ptr<Layer<float>> make_identity<float>(const std::string&, const Shape&);
template std::unique_ptr<Layer<double>> make_identity<double>(const std::string&, const Shape&);

}  // namespace cnnbp
