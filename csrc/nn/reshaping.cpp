// Reshaping layers: ZeroPadding2D and Cropping2D (a window copy each way), Identity (a view).
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

}  // namespace

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
