#include "nn/layers.h"
#include "nn/registry.h"

#include <cstdio>
#include <sstream>

#include "core/check.h"
#include "core/parallel.h"

namespace cnnbp {

std::string shape_str(const Shape& s, bool batch) {
  std::ostringstream os;
  os << "(";
  if (batch) os << "None" << (s.empty() ? "," : ", ");
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  if (!batch && s.size() == 1) os << ",";
  os << ")";
  return os.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int d : s) n *= d;
  return n;
}

namespace {
// The exact decimal digits of a product too large for 64 bits (messages show the true numbers).
std::string exact_product(const std::vector<int64_t>& f) {
  std::vector<uint32_t> big{1};  // base 1e9, little-endian
  for (int64_t v : f) {
    unsigned __int128 carry = 0;
    for (auto& d : big) {
      const unsigned __int128 x = static_cast<unsigned __int128>(d) * static_cast<uint64_t>(v) + carry;
      d = uint32_t(x % 1000000000u);
      carry = x / 1000000000u;
    }
    while (carry) {
      big.push_back(uint32_t(carry % 1000000000u));
      carry /= 1000000000u;
    }
  }
  std::string out = std::to_string(big.back());
  char part[16];
  for (size_t i = big.size() - 1; i-- > 0;) {
    std::snprintf(part, sizeof(part), "%09u", big[i]);
    out += part;
  }
  return out;
}
}  // namespace

int64_t checked_numel(const std::string& who, const Shape& s) {
  int64_t n = 1;
  bool over = false;
  for (int d : s) {
    CNNBP_CHECK(d > 0, who, ": a tensor of shape ", shape_str(s, true), " has a non-positive axis");
    over = over || __builtin_mul_overflow(n, int64_t(d), &n) || n > kMaxSampleElems;
  }
  CNNBP_CHECK(!over, who, ": a tensor of shape ", shape_str(s, true), " has ",
              exact_product(std::vector<int64_t>(s.begin(), s.end())), " elements per sample; at most 2**31 - 1 = ",
              kMaxSampleElems, " are supported");
  return n;
}

int64_t checked_mul(const std::string& who, const char* what, int64_t a, int64_t b, int64_t limit) {
  int64_t r = 0;
  CNNBP_CHECK(!__builtin_mul_overflow(a, b, &r) && r <= limit, who, ": ", what, " ", a, " x ", b, " = ",
              exact_product({a, b}), " exceeds ", limit);
  return r;
}

template <typename T>
void set_shapes(Layer<T>& l, const std::string& name, const Shape& in, const Shape& out) {
  l.name = name;
  l.in_shapes = {in};
  l.in_shape = in;
  l.out_shape = out;
  l.in_size = checked_numel(name, in);
  l.out_size = checked_numel(name, out);
}

void require_rank3(const std::string& name, const char* kind, const Shape& in) {
  CNNBP_CHECK(in.size() == 3, name, " (", kind, "): expected input of rank 3 (height, width, channels), got shape ",
              shape_str(in, true));
}

namespace {

void resolve_pad(PadMode mode, int H, int W, int kh, int kw, int sh, int sw, int dh, int dw, int* pt,
                 int* pb, int* pl, int* pr) {
  if (mode == PadMode::same) {
    same_padding(H, kh, sh, dh, pt, pb);
    same_padding(W, kw, sw, dw, pl, pr);
  } else if (mode == PadMode::valid) {
    *pt = *pb = *pl = *pr = 0;
  }
}

// An elementwise activation fused into a layer with weights: applied to the layer's output in
// place after the kernel, and undone in backward as d(pre) = dy * act'(y) (every supported kind's
// derivative is a function of its output: relu and leaky_relu test y > 0, sigmoid and tanh use y).
template <typename T>
class FusedAct {
 public:
  FusedAct(const std::string& name, Act act, double alpha) : act_(act), alpha_(T(alpha)) {
    CNNBP_CHECK(act != Act::softmax, name, ": softmax cannot be fused into the layer (it is its own layer)");
    CNNBP_CHECK(act_derivative_from_output(act), name, ": activation ", kActNames[int(act)],
                " cannot be fused into the layer (its derivative needs the input: an Activation node of its own)");
    CNNBP_CHECK(act != Act::leaky_relu || alpha > 0, name, ": leaky_relu slope must be > 0 to fuse");
  }
  bool active() const { return act_ != Act::linear; }
  void forward(const KernelTable<T>& k, T* y, int64_t n) const {
    if (active()) k.activation_forward(y, y, n, act_, alpha_);
  }
  // Turns dy into the gradient with respect to the pre-activation output, in place.
  void backward(const KernelTable<T>& k, T* dy, const T* y, int64_t n) const {
    if (active()) k.activation_backward(dy, dy, y, y, n, act_, alpha_);
  }

 private:
  Act act_;
  T alpha_;
};

// ---- conv2d ---------------------------------------------------------------------------------
// The geometry of a convolution of (H, W, C) input `in` (batch 0): padding resolved, every
// size checked and named after the layer.
static Conv2dParams conv_geometry(const std::string& name, const char* kind, const Shape& in, const Conv2dConfig& c) {
  require_rank3(name, kind, in);
  int pt = c.pt, pb = c.pb, pl = c.pl, pr = c.pr;
  resolve_pad(c.pad, in[0], in[1], c.kh, c.kw, c.sh, c.sw, c.dh, c.dw, &pt, &pb, &pl, &pr);
  const std::string who = name + " (" + kind + ")";
  return make_conv2d_params(who.c_str(), 0, in[0], in[1], in[2], c.filters, c.kh, c.kw, c.sh, c.sw, c.dh, c.dw, pt,
                            pb, pl, pr);
}

template <typename T>
class Conv2dLayer : public Layer<T> {
 public:
  Conv2dLayer(const std::string& name, const Shape& in, const Conv2dConfig& c) : cfg_(c), act_(name, c.act, c.alpha) {
    p_ = conv_geometry(name, "Conv2D", in, c);
    set_shapes(*this, name, in, Shape{p_.P, p_.Q, c.filters});
    const std::string who2 = name + " (Conv2D)";
    const int64_t nk = checked_mul(who2, "kernel size", checked_mul(who2, "kernel size", int64_t(c.kh) * c.kw, in[2],
                                                                    kMaxParams), c.filters, kMaxParams);
    this->params.push_back({"kernel", {c.kh, c.kw, in[2], c.filters}, 0, nk, c.kernel_init,
                            int64_t(c.kh) * c.kw * in[2], int64_t(c.kh) * c.kw * c.filters});
    if (c.use_bias) this->params.push_back({"bias", {c.filters}, 0, c.filters, c.bias_init, in[2], c.filters});
  }
  const char* kind() const override { return "Conv2D"; }
  int64_t workspace(const KernelTable<T>& k, int N, int nthreads) const override {
    Conv2dParams p = p_;
    p.N = N;
    return k.conv2d_workspace(p, nthreads);
  }
  void forward(const KernelTable<T>& k, const PassContext&, int N, const T* x, T* y, T* ws, bool) override {
    Conv2dParams p = p_;
    p.N = N;
    p.relu = cfg_.act == Act::relu;  // fused into the kernel's store
    if (this->pre_scale)
      k.conv2d_forward_pre(y, x, this->pre_scale, this->pre_shift, this->w(0), cfg_.use_bias ? this->w(1) : nullptr,
                           ws, p);
    else
      k.conv2d_forward(y, x, this->w(0), cfg_.use_bias ? this->w(1) : nullptr, ws, p);
    if (!p.relu) act_.forward(k, y, N * this->out_size);
  }
  bool takes_prologue(const KernelTable<T>& k, int N) const override {
    Conv2dParams p = p_;
    p.N = N;
    return k.conv2d_prologue_ok && k.conv2d_prologue_ok(p);
  }
  // The data gradient can add into dx (a tensor with several readers): no extra pass.
  bool accumulates() const override { return true; }
  bool backward_reads_output() const override { return act_.active(); }  // a fused activation's backward
  bool relu_output() const override { return cfg_.act == Act::relu; }
  void backward(const KernelTable<T>& k, const PassContext& c, int N, const T* x, const T* y, T* dy,
                T* dx, T* ws) override {
    const bool fresh = false;
    backward_n(k, c, N, &x, y, dy, &dx, &fresh, ws);
  }
  void backward_n(const KernelTable<T>& k, const PassContext&, int N, const T* const* xs, const T* y, T* dy,
                  T* const* dxs, const bool* accumulate, T* ws) override {
    Conv2dParams p = p_;
    p.N = N;
    if (!this->relu_grad_done) act_.backward(k, dy, y, N * this->out_size);
    if (this->trainable && this->pre_scale)
      k.conv2d_backward_weight_pre(this->g(0), cfg_.use_bias ? this->g(1) : nullptr, dy, xs[0], this->pre_scale,
                                   this->pre_shift, ws, p);
    else if (this->trainable)
      k.conv2d_backward_weight(this->g(0), cfg_.use_bias ? this->g(1) : nullptr, dy, xs[0], ws, p);
    if (dxs[0]) k.conv2d_backward_data(dxs[0], dy, this->w(0), ws, p, accumulate[0]);
  }
  int64_t plan_bytes(const KernelTable<T>&, int) const override { return int64_t(fold_.capacity()) * int64_t(sizeof(T)); }
  // Per image: the direct kernels compute each (image, filter block) alone, in the same order at
  // any batch size; Winograd numbers its tiles over the batch and stays unfused.
  bool image_forward_ok(const KernelTable<T>& k, int N) const override {
    Conv2dParams p = p_;
    p.N = 1;
    if (k.conv2d_algorithm(p, 0) != kConvDirect) return false;
    p.N = N;
    return k.conv2d_algorithm(p, 0) == kConvDirect;
  }
  int64_t image_workspace(const KernelTable<T>& k) const override { return workspace(k, 1, 1); }
  void forward_image(const KernelTable<T>& k, const T* x, T* y, T* ws) const override {
    Conv2dParams p = p_;
    p.N = 1;
    p.relu = cfg_.act == Act::relu;
    k.conv2d_forward(y, x, this->w(0), cfg_.use_bias ? this->w(1) : nullptr, ws, p);
    if (!p.relu) act_.forward(k, y, this->out_size);
  }
  // Folding: w'[.., k] = w[.., k]*scale[k], b'[k] = b[k]*scale[k] + shift[k]; the ReLU after it
  // goes into the kernel's store. Only a convolution without an activation of its own.
  bool can_fold_affine() const override { return cfg_.act == Act::linear; }
  void plan_fold() override { fold_.reserve(size_t(this->params[0].size + cfg_.filters)); }
  void forward_folded(const KernelTable<T>& k, const PassContext&, int N, const T* x, T* y, T* ws, const T* scale,
                      const T* shift, Act act) override {
    const int K = cfg_.filters;
    const int64_t nw = this->params[0].size;
    T* w = fold_.data();
    T* b = w + nw;
    const T* w0 = this->w(0);
    for (int64_t i = 0; i < nw; i += K)
      for (int c = 0; c < K; ++c) w[i + c] = w0[i + c] * scale[c];
    for (int c = 0; c < K; ++c) b[c] = (cfg_.use_bias ? this->w(1)[c] * scale[c] : T(0)) + shift[c];
    Conv2dParams p = p_;
    p.N = N;
    p.relu = act == Act::relu;
    k.conv2d_forward(y, x, w, b, ws, p);
  }

 private:
  Conv2dConfig cfg_;
  Conv2dParams p_;
  FusedAct<T> act_;
  Buffer<T> fold_;  // weights and bias with a following BatchNormalization folded in (inference)
};

// ---- grouped and depthwise conv2d --------------------------------------------------------------
template <typename T>
class GroupedConv2dLayer : public Layer<T> {
 public:
  GroupedConv2dLayer(const std::string& name, const Shape& in, const Conv2dConfig& c, int G, bool depthwise)
      : cfg_(c), act_(name, c.act, c.alpha), G_(G), depthwise_(depthwise) {
    const char* kind = depthwise ? "DepthwiseConv2D" : "Conv2D";
    p_ = conv_geometry(name, kind, in, c);
    const std::string who = name + " (" + kind + ")";
    CNNBP_CHECK(G >= 1 && in[2] % G == 0 && c.filters % G == 0, who, ": groups (", G,
                ") must divide the input channels (", in[2], ") and the filters (", c.filters, ")");
    set_shapes(*this, name, in, Shape{p_.P, p_.Q, c.filters});
    const int Cg = in[2] / G;
    const int64_t rf = int64_t(c.kh) * c.kw;
    const int64_t nk = checked_mul(who, "kernel size", checked_mul(who, "kernel size", rf, Cg, kMaxParams), c.filters,
                                   kMaxParams);
    if (depthwise) {  // Keras's depthwise kernel (kh, kw, C, m) and its fans
      const int m = c.filters / in[2];
      this->params.push_back({"kernel", {c.kh, c.kw, in[2], m}, 0, nk, c.kernel_init, rf * in[2], rf * m});
    } else {
      this->params.push_back({"kernel", {c.kh, c.kw, Cg, c.filters}, 0, nk, c.kernel_init, rf * Cg, rf * c.filters});
    }
    if (c.use_bias) this->params.push_back({"bias", {c.filters}, 0, c.filters, c.bias_init, Cg, c.filters});
  }
  const char* kind() const override { return depthwise_ ? "DepthwiseConv2D" : "Conv2D"; }
  // Groups with several input channels each run as G ordinary convolutions (the SIMD conv2d
  // kernels) on channel slices gathered into the workspace; thin groups (depthwise) use the
  // grouped kernel directly.
  bool per_group() const { return p_.C / G_ >= 4; }
  Conv2dParams group_params(int N) const {
    Conv2dParams q = p_;
    q.N = N;
    q.C = p_.C / G_;
    q.K = p_.K / G_;
    return q;
  }
  // workspace: conv scratch, then x slice [N,H,W,Cg], dx slice, y/dy slice [N,P,Q,Kg], w/dw slice.
  int64_t workspace(const KernelTable<T>& k, int N, int nthreads) const override {
    if (!per_group()) return 0;
    const Conv2dParams q = group_params(N);
    return k.conv2d_workspace(q, nthreads) + 2 * int64_t(N) * q.H * q.W * q.C + int64_t(N) * q.P * q.Q * q.K +
           2 * int64_t(q.R) * q.S * q.C * q.K + 64;
  }
  struct Slices {
    T *conv, *x, *dx, *y, *w, *dw;
  };
  Slices slices(const KernelTable<T>& k, T* ws, const Conv2dParams& q, int nthreads) const {
    Slices s;
    auto align = [](int64_t n) { return (n + 15) & ~int64_t(15); };
    s.conv = ws;
    s.x = s.conv + align(k.conv2d_workspace(q, nthreads));
    s.dx = s.x + align(int64_t(q.N) * q.H * q.W * q.C);
    s.y = s.dx + align(int64_t(q.N) * q.H * q.W * q.C);
    s.w = s.y + align(int64_t(q.N) * q.P * q.Q * q.K);
    s.dw = s.w + align(int64_t(q.R) * q.S * q.C * q.K);
    return s;
  }
  void forward(const KernelTable<T>& k, const PassContext& c, int N, const T* x, T* y, T* ws, bool) override {
    Conv2dParams p = p_;
    p.N = N;
    if (!per_group()) {
      k.grouped_conv2d_forward(y, x, this->w(0), cfg_.use_bias ? this->w(1) : nullptr, p, G_);
    } else {
      const Conv2dParams q = group_params(N);
      const Slices s = slices(k, ws, q, c.nthreads);
      const int64_t Mi = int64_t(N) * q.H * q.W, Mo = int64_t(N) * q.P * q.Q, Mw = int64_t(q.R) * q.S * q.C;
      for (int g = 0; g < G_; ++g) {
        k.concat_backward(s.x, x, Mi, q.C, p.C, g * q.C, false);
        k.concat_backward(s.w, this->w(0), Mw, q.K, p.K, g * q.K, false);
        k.conv2d_forward(s.y, s.x, s.w, cfg_.use_bias ? this->w(1) + g * q.K : nullptr, s.conv, q);
        k.concat_forward(y, s.y, Mo, q.K, p.K, g * q.K);
      }
    }
    act_.forward(k, y, N * this->out_size);
  }
  bool accumulates() const override { return true; }
  bool backward_reads_output() const override { return act_.active(); }
  void backward_n(const KernelTable<T>& k, const PassContext& c, int N, const T* const* xs, const T* y, T* dy,
                  T* const* dxs, const bool* accumulate, T* ws) override {
    Conv2dParams p = p_;
    p.N = N;
    act_.backward(k, dy, y, N * this->out_size);
    if (this->trainable && cfg_.use_bias) k.channel_bias_grad(this->g(1), dy, int64_t(N) * p.P * p.Q, cfg_.filters);
    if (!per_group()) {
      if (this->trainable) k.grouped_conv2d_backward_weight(this->g(0), xs[0], dy, p, G_);
      if (dxs[0]) k.grouped_conv2d_backward_data(dxs[0], dy, this->w(0), p, G_, accumulate[0]);
      return;
    }
    const Conv2dParams q = group_params(N);
    const Slices s = slices(k, ws, q, c.nthreads);
    const int64_t Mi = int64_t(N) * q.H * q.W, Mo = int64_t(N) * q.P * q.Q, Mw = int64_t(q.R) * q.S * q.C;
    for (int g = 0; g < G_; ++g) {
      k.concat_backward(s.y, dy, Mo, q.K, p.K, g * q.K, false);
      if (this->trainable) {
        k.concat_backward(s.x, xs[0], Mi, q.C, p.C, g * q.C, false);
        k.conv2d_backward_weight(s.dw, nullptr, s.y, s.x, s.conv, q);
        k.concat_forward(this->g(0), s.dw, Mw, q.K, p.K, g * q.K);
      }
      if (dxs[0]) {
        k.concat_backward(s.w, this->w(0), Mw, q.K, p.K, g * q.K, false);
        // an accumulating gradient: start from the slice already there
        if (accumulate[0]) k.concat_backward(s.dx, dxs[0], Mi, q.C, p.C, g * q.C, false);
        k.conv2d_backward_data(s.dx, s.y, s.w, s.conv, q, accumulate[0]);
        k.concat_forward(dxs[0], s.dx, Mi, q.C, p.C, g * q.C);
      }
    }
  }

 private:
  Conv2dConfig cfg_;
  Conv2dParams p_;
  FusedAct<T> act_;
  int G_;
  bool depthwise_;
};

// ---- conv2d transpose -------------------------------------------------------------------------
// The adjoint of a convolution: the convolution p_ maps the (big) output [Ho,Wo,F] to the (small)
// input [H,W,Cin] with kernel [kh,kw,F,Cin] (Keras's Conv2DTranspose kernel layout), so forward is
// that convolution's data gradient, the data gradient is that convolution, and the weight
// gradient is its weight gradient with the two tensors' roles exchanged. Output size, as Keras:
// without output_padding, valid: H s + max(k_eff - s, 0), same: H s; with it (op < s),
// (H - 1) s + k_eff - 2 pad + op, pad = k_eff / 2 for same and 0 for valid.
static int deconv_length(int in, int k, int s, int d, PadMode pad, int op) {
  const int64_t keff = int64_t(k - 1) * d + 1;
  int64_t out;
  if (op < 0) out = pad == PadMode::same ? int64_t(in) * s : int64_t(in) * s + (keff - s > 0 ? keff - s : 0);
  else out = int64_t(in - 1) * s + keff - 2 * (pad == PadMode::same ? keff / 2 : 0) + op;
  return out > INT32_MAX ? -1 : int(out);
}

template <typename T>
class Conv2dTransposeLayer : public Layer<T> {
 public:
  Conv2dTransposeLayer(const std::string& name, const Shape& in, const Conv2dConfig& c, int oph, int opw)
      : cfg_(c), act_(name, c.act, c.alpha) {
    require_rank3(name, "Conv2DTranspose", in);
    const std::string who = name + " (Conv2DTranspose)";
    CNNBP_CHECK(c.filters > 0, who, ": filters must be positive, got ", c.filters);
    CNNBP_CHECK(c.kh > 0 && c.kw > 0 && c.sh > 0 && c.sw > 0 && c.dh > 0 && c.dw > 0, who,
                ": kernel size, strides and dilation must be positive");
    CNNBP_CHECK((oph < 0) == (opw < 0), who, ": output_padding must give both sizes or neither");
    CNNBP_CHECK(oph < 0 || (oph < c.sh && opw < c.sw), who, ": output_padding (", oph, ", ", opw,
                ") must be smaller than the strides (", c.sh, ", ", c.sw, ")");
    const int Ho = deconv_length(in[0], c.kh, c.sh, c.dh, c.pad, oph), Wo = deconv_length(in[1], c.kw, c.sw, c.dw, c.pad, opw);
    CNNBP_CHECK(Ho > 0 && Wo > 0, who, ": the output size ", Ho, "x", Wo, " of an input of shape ", shape_str(in, true),
                " is empty or too large");
    int pt = 0, pb = 0, pl = 0, pr = 0;
    resolve_pad(c.pad, Ho, Wo, c.kh, c.kw, c.sh, c.sw, c.dh, c.dw, &pt, &pb, &pl, &pr);
    p_ = make_conv2d_params(who.c_str(), 0, Ho, Wo, c.filters, in[2], c.kh, c.kw, c.sh, c.sw, c.dh, c.dw, pt, pb, pl,
                            pr);
    CNNBP_CHECK(p_.P == in[0] && p_.Q == in[1], who, ": internal size mismatch (", p_.P, "x", p_.Q, " vs ", in[0], "x",
                in[1], ")");
    set_shapes(*this, name, in, Shape{Ho, Wo, c.filters});
    const int64_t nk = checked_mul(who, "kernel size", checked_mul(who, "kernel size", int64_t(c.kh) * c.kw, c.filters,
                                                                   kMaxParams), in[2], kMaxParams);
    // fan in / out as Keras counts them for this kernel: (kh kw filters) and (kh kw in_channels)
    this->params.push_back({"kernel", {c.kh, c.kw, c.filters, in[2]}, 0, nk, c.kernel_init,
                            int64_t(c.kh) * c.kw * in[2], int64_t(c.kh) * c.kw * c.filters});
    if (c.use_bias) this->params.push_back({"bias", {c.filters}, 0, c.filters, c.bias_init, in[2], c.filters});
  }
  const char* kind() const override { return "Conv2DTranspose"; }
  int64_t workspace(const KernelTable<T>& k, int N, int nthreads) const override {
    Conv2dParams p = p_;
    p.N = N;
    return k.conv2d_workspace(p, nthreads);
  }
  void forward(const KernelTable<T>& k, const PassContext&, int N, const T* x, T* y, T* ws, bool) override {
    Conv2dParams p = p_;
    p.N = N;
    k.conv2d_backward_data(y, x, this->w(0), ws, p, false);
    if (cfg_.use_bias) k.channel_bias_add(y, this->w(1), int64_t(N) * p.H * p.W, cfg_.filters);
    act_.forward(k, y, N * this->out_size);
  }
  bool accumulates() const override { return false; }
  bool backward_reads_output() const override { return act_.active(); }
  void backward(const KernelTable<T>& k, const PassContext&, int N, const T* x, const T* y, T* dy, T* dx,
                T* ws) override {
    Conv2dParams p = p_;
    p.N = N;
    act_.backward(k, dy, y, N * this->out_size);
    if (this->trainable) {
      k.conv2d_backward_weight(this->g(0), nullptr, x, dy, ws, p);
      if (cfg_.use_bias) k.channel_bias_grad(this->g(1), dy, int64_t(N) * p.H * p.W, cfg_.filters);
    }
    if (dx) k.conv2d_forward(dx, dy, this->w(0), nullptr, ws, p);
  }

 private:
  Conv2dConfig cfg_;
  Conv2dParams p_;
  FusedAct<T> act_;
};

// ---- pool2d ---------------------------------------------------------------------------------
static inline int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

template <typename T>
class Pool2dLayer : public Layer<T> {
 public:
  Pool2dLayer(const std::string& name, const Shape& in, const Pool2dConfig& c) : max_(c.max) {
    require_rank3(name, c.max ? "MaxPooling2D" : "AveragePooling2D", in);
    int pt = 0, pb = 0, pl = 0, pr = 0;
    resolve_pad(c.pad, in[0], in[1], c.ph, c.pw, c.sh, c.sw, 1, 1, &pt, &pb, &pl, &pr);
    const std::string who = name + (c.max ? " (MaxPooling2D)" : " (AveragePooling2D)");
    p_ = make_pool2d_params(who.c_str(), 0, in[0], in[1], in[2], c.ph, c.pw, c.sh, c.sw, pt, pb, pl, pr);
    set_shapes(*this, name, in, Shape{p_.P, p_.Q, in[2]});
  }
  const char* kind() const override { return max_ ? "MaxPooling2D" : "AveragePooling2D"; }
  bool backward_reads_inputs() const override { return false; }  // the arg-max / window geometry only
  bool backward_reads_output() const override { return this->relu_pair; }  // relu'(x) at the arg-max: [y > 0]
  bool takes_relu_grad() const override { return max_; }
  void plan(const KernelTable<T>&, int N) override {
    if (max_) argmax_.reserve(size_t(N) * this->out_size);
  }
  int64_t plan_bytes(const KernelTable<T>&, int N) const override {
    return max_ ? int64_t(N) * this->out_size * 4 : 0;
  }
  void forward(const KernelTable<T>& k, const PassContext&, int N, const T* x, T* y, T*, bool training) override {
    Pool2dParams p = p_;
    p.N = N;
    // The arg-max is recorded in inference too: a backward pass may follow any forward pass
    // (saliency maps), and it must never read positions from an older batch.
    (void)training;
    if (max_) k.max_pool2d_forward(y, argmax_.data(), x, p);
    else k.avg_pool2d_forward(y, x, p);
  }
  bool pools_images() const override { return true; }
  // Per thread: the producer's image, then its scratch.
  static int64_t image_stride(const KernelTable<T>& k, const Layer<T>& producer) {
    return round16(producer.out_size) + round16(producer.image_workspace(k));
  }
  int64_t pooled_workspace(const KernelTable<T>& k, const Layer<T>& producer, int nthreads) const override {
    return int64_t(nthreads > 1 ? nthreads : 1) * image_stride(k, producer);
  }
  // Images are claimed by the pool's threads in contiguous ranges; each image's pooled values and
  // arg-maxes are those of the separate passes (the same kernels, one image at a time).
  void forward_pooled(const KernelTable<T>& k, const PassContext&, int N, const Layer<T>& producer, const T* x,
                      T* y, T* ws) override {
    Pool2dParams p = p_;
    p.N = 1;
    const int64_t stride = image_stride(k, producer), in_img = producer.in_size, out_img = this->out_size;
    int32_t* am = argmax_.data();
    const bool mx = max_;
    parallel_for(N, 1, [&](int64_t n0, int64_t n1, int tid) {
      ThreadScope one(1);
      T* img = ws + tid * stride;
      T* scratch = img + round16(producer.out_size);
      for (int64_t n = n0; n < n1; ++n) {
        producer.forward_image(k, x + n * in_img, img, scratch);
        if (mx) k.max_pool2d_forward(y + n * out_img, am + n * out_img, img, p);
        else k.avg_pool2d_forward(y + n * out_img, img, p);
      }
    });
  }
  void backward(const KernelTable<T>& k, const PassContext&, int N, const T*, const T* y, T* dy,
                T* dx, T*) override {
    if (!dx) return;
    Pool2dParams p = p_;
    p.N = N;
    if (max_) k.max_pool2d_backward(dx, dy, argmax_.data(), p, this->relu_grad_in ? y : nullptr);
    else k.avg_pool2d_backward(dx, dy, p);
  }

 private:
  bool max_;
  Pool2dParams p_;
  Buffer<int32_t> argmax_;
};

template <typename T>
class GlobalAvgPoolLayer : public Layer<T> {
 public:
  GlobalAvgPoolLayer(const std::string& name, const Shape& in) {
    require_rank3(name, "GlobalAveragePooling2D", in);
    set_shapes(*this, name, in, Shape{in[2]});
  }
  const char* kind() const override { return "GlobalAveragePooling2D"; }
  bool backward_reads_inputs() const override { return false; }  // the arg-max / window geometry only
  bool backward_reads_output() const override { return false; }
  void forward(const KernelTable<T>& k, const PassContext&, int N, const T* x, T* y, T*, bool) override {
    k.global_avg_pool2d_forward(y, x, N, this->in_shape[0] * this->in_shape[1], this->in_shape[2]);
  }
  void backward(const KernelTable<T>& k, const PassContext&, int N, const T*, const T*, T* dy,
                T* dx, T*) override {
    if (dx) k.global_avg_pool2d_backward(dx, dy, N, this->in_shape[0] * this->in_shape[1], this->in_shape[2]);
  }
};

template <typename T>
class GlobalMaxPoolLayer : public Layer<T> {
 public:
  GlobalMaxPoolLayer(const std::string& name, const Shape& in) {
    require_rank3(name, "GlobalMaxPooling2D", in);
    set_shapes(*this, name, in, Shape{in[2]});
  }
  const char* kind() const override { return "GlobalMaxPooling2D"; }
  bool backward_reads_inputs() const override { return false; }  // the arg-max / window geometry only
  bool backward_reads_output() const override { return false; }
  void plan(const KernelTable<T>&, int N) override { argmax_.reserve(size_t(N) * this->out_size); }
  int64_t plan_bytes(const KernelTable<T>&, int N) const override { return int64_t(N) * this->out_size * 4; }
  void forward(const KernelTable<T>& k, const PassContext&, int N, const T* x, T* y, T*, bool) override {
    k.global_max_pool2d_forward(y, argmax_.data(), x, N, this->in_shape[0] * this->in_shape[1], this->in_shape[2]);
  }
  void backward(const KernelTable<T>& k, const PassContext&, int N, const T*, const T*, T* dy, T* dx, T*) override {
    if (dx)
      k.global_max_pool2d_backward(dx, dy, argmax_.data(), N, this->in_shape[0] * this->in_shape[1], this->in_shape[2],
                                   false);
  }

 private:
  Buffer<int32_t> argmax_;
};

// ---- dense ----------------------------------------------------------------------------------
// Acts on the last axis, as Keras: an input (..., I) is treated as rows of I features.
template <typename T>
class DenseLayer : public Layer<T> {
 public:
  DenseLayer(const std::string& name, const Shape& in, int units, bool use_bias, const std::string& ki,
             const std::string& bi, Act act, double alpha)
      : use_bias_(use_bias), act_(name, act, alpha) {
    CNNBP_CHECK(!in.empty(), name, " (Dense): expected an input with at least one feature axis, got shape ",
                shape_str(in, true));
    CNNBP_CHECK(units > 0, name, " (Dense): expected units > 0, got ", units);
    Shape out = in;
    out.back() = units;
    set_shapes(*this, name, in, out);
    I_ = in.back();
    O_ = units;
    rows_ = shape_numel(in) / I_;
    this->params.push_back({"kernel", {I_, O_}, 0, checked_mul(name + " (Dense)", "kernel size", I_, O_, kMaxParams), ki,
                            I_, O_});
    if (use_bias) this->params.push_back({"bias", {O_}, 0, O_, bi, I_, O_});
  }
  const char* kind() const override { return "Dense"; }
  int64_t workspace(const KernelTable<T>& k, int N, int) const override {
    return k.dense_workspace(int(N * rows_), I_, O_);
  }
  void forward(const KernelTable<T>& k, const PassContext&, int N, const T* x, T* y, T* ws, bool) override {
    k.dense_forward(y, x, this->w(0), use_bias_ ? this->w(1) : nullptr, int(N * rows_), I_, O_, ws);
    act_.forward(k, y, N * this->out_size);
  }
  bool accumulates() const override { return true; }  // dx += dy W^T for a tensor with several readers
  bool backward_reads_output() const override { return act_.active(); }
  void backward(const KernelTable<T>& k, const PassContext& c, int N, const T* x, const T* y, T* dy,
                T* dx, T* ws) override {
    const bool fresh = false;
    backward_n(k, c, N, &x, y, dy, &dx, &fresh, ws);
  }
  void backward_n(const KernelTable<T>& k, const PassContext&, int N, const T* const* xs, const T* y, T* dy,
                  T* const* dxs, const bool* accumulate, T* ws) override {
    const int M = int(N * rows_);
    act_.backward(k, dy, y, N * this->out_size);
    if (this->trainable)
      k.dense_backward_weight(this->g(0), use_bias_ ? this->g(1) : nullptr, dy, xs[0], M, I_, O_, ws);
    if (dxs[0]) k.dense_backward_data(dxs[0], dy, this->w(0), M, I_, O_, ws, accumulate[0]);
  }

 private:
  bool use_bias_;
  FusedAct<T> act_;
  int I_ = 0, O_ = 0;
  int64_t rows_ = 1;
};

// ---- flatten --------------------------------------------------------------------------------
template <typename T>
class FlattenLayer : public Layer<T> {
 public:
  FlattenLayer(const std::string& name, const Shape& in) {
    set_shapes(*this, name, in, Shape{int(checked_numel(name + " (Flatten)", in))});
  }
  const char* kind() const override { return "Flatten"; }
  bool is_alias() const override { return true; }
  void forward(const KernelTable<T>&, const PassContext&, int, const T*, T*, T*, bool) override {}
  void backward(const KernelTable<T>&, const PassContext&, int, const T*, const T*, T*, T*, T*) override {}
};

// ---- activation -----------------------------------------------------------------------------
template <typename T>
class ActivationLayer : public Layer<T> {
 public:
  ActivationLayer(const std::string& name, const Shape& in, Act kind, double alpha) : act_(kind), alpha_(T(alpha)) {
    CNNBP_CHECK(!in.empty(), name, " (Activation): expected a non-scalar input");
    set_shapes(*this, name, in, in);
  }
  const char* kind() const override { return "Activation"; }
  Act act() const { return act_; }
  // ReLU and leaky ReLU look at the input's sign; sigmoid, tanh and softmax at the output; the
  // other kinds (elu, gelu, ...) at the input.
  bool backward_reads_inputs() const override {
    return act_ == Act::relu || act_ == Act::leaky_relu || act_ == Act::relu_max || !act_derivative_from_output(act_);
  }
  bool backward_reads_output() const override {
    return act_ == Act::sigmoid || act_ == Act::tanh || act_ == Act::softmax;
  }
  void forward(const KernelTable<T>& k, const PassContext&, int N, const T* x, T* y, T*, bool) override {
    if (act_ == Act::softmax) {
      const int K = this->in_shape.back();
      k.softmax_forward(y, x, int(N * (this->in_size / K)), K);
    } else {
      k.activation_forward(y, x, N * this->in_size, act_, alpha_);
    }
  }
  void backward(const KernelTable<T>& k, const PassContext&, int N, const T* x, const T* y, T* dy,
                T* dx, T*) override {
    if (!dx) return;
    if (act_ == Act::softmax) {
      const int K = this->in_shape.back();
      k.softmax_backward(dx, dy, y, int(N * (this->in_size / K)), K);
    } else {
      k.activation_backward(dx, dy, x, y, N * this->in_size, act_, alpha_);
    }
  }

 private:
  Act act_;
  T alpha_;
};

// ---- PReLU ----------------------------------------------------------------------------------
// y = x > 0 ? x : alpha * x with a learned slope per element of a sample, one slope shared along
// the shared axes (Keras's shared_axes, 1-based): alpha's shape is the input's with those set to 1.
template <typename T>
class PReluLayer : public Layer<T> {
 public:
  PReluLayer(const std::string& name, const Shape& in, const std::vector<int>& shared, const std::string& init) {
    CNNBP_CHECK(!in.empty() && in.size() <= 4, name, " (PReLU): inputs of 1 to 4 axes per sample, got ",
                shape_str(in, true));
    ashape_ = in;
    for (int a : shared) {
      CNNBP_CHECK(a >= 1 && a <= int(in.size()), name, " (PReLU): shared_axes must be in 1..", in.size(), ", got ", a);
      ashape_[a - 1] = 1;
    }
    set_shapes(*this, name, in, in);
    na_ = shape_numel(ashape_);
    this->params.push_back({"alpha", ashape_, 0, na_, init, na_, na_});
  }
  const char* kind() const override { return "PReLU"; }
  bool backward_reads_output() const override { return false; }
  bool accumulates() const override { return true; }
  // The element -> slope map and the slope-gradient sums, made when the network plans.
  void plan(const KernelTable<T>&, int) override {
    if (idx_.capacity() >= size_t(this->in_size)) return;
    idx_.reserve(size_t(this->in_size));
    sums_.reserve(size_t(na_));
    const int r = int(this->in_shape.size());
    int64_t coord[4] = {0, 0, 0, 0};
    for (int64_t i = 0; i < this->in_size; ++i) {
      int64_t rest = i, a = 0;
      for (int j = r - 1; j >= 0; --j) {
        coord[j] = rest % this->in_shape[j];
        rest /= this->in_shape[j];
      }
      for (int j = 0; j < r; ++j) a = a * ashape_[j] + (ashape_[j] == 1 ? 0 : coord[j]);
      idx_.data()[i] = int32_t(a);
    }
  }
  int64_t plan_bytes(const KernelTable<T>&, int) const override {
    return this->in_size * int64_t(sizeof(int32_t)) + na_ * int64_t(sizeof(double));
  }
  void forward(const KernelTable<T>& k, const PassContext&, int N, const T* x, T* y, T*, bool) override {
    k.prelu_forward(y, x, this->w(0), idx_.data(), N, this->in_size);
  }
  void backward_n(const KernelTable<T>& k, const PassContext&, int N, const T* const* xs, const T*, T* dy,
                  T* const* dxs, const bool* accumulate, T*) override {
    k.prelu_backward(dxs[0], this->trainable ? this->g(0) : nullptr, na_, dy, xs[0], this->w(0), idx_.data(), N,
                     this->in_size, accumulate[0], sums_.data());
  }

 private:
  Shape ashape_;
  int64_t na_ = 0;
  Buffer<int32_t> idx_;
  Buffer<double> sums_;
};

// ---- dropout --------------------------------------------------------------------------------
template <typename T>
class DropoutLayer : public Layer<T> {
 public:
  DropoutLayer(const std::string& name, const Shape& in, double rate, uint64_t seed) : rate_(rate), seed_(seed) {
    CNNBP_CHECK(rate >= 0.0 && rate < 1.0, name, " (Dropout): expected 0 <= rate < 1, got ", rate);
    set_shapes(*this, name, in, in);
  }
  const char* kind() const override { return "Dropout"; }
  bool backward_reads_inputs() const override { return false; }  // its mask only
  bool backward_reads_output() const override { return false; }
  void plan(const KernelTable<T>&, int N) override { mask_.reserve(size_t(N) * this->in_size); }
  int64_t plan_bytes(const KernelTable<T>&, int N) const override { return int64_t(N) * this->in_size * sizeof(T); }
  void forward(const KernelTable<T>& k, const PassContext& c, int N, const T* x, T* y, T*, bool training) override {
    const int64_t n = N * this->in_size;
    training_ = training && rate_ > 0.0;
    if (training_) {
      k.dropout_forward(y, mask_.data(), x, n, rate_, seed_, c.step);
    } else {
      for (int64_t i = 0; i < n; ++i) y[i] = x[i];
    }
  }
  void backward(const KernelTable<T>& k, const PassContext&, int N, const T*, const T*, T* dy, T* dx,
                T*) override {
    if (!dx) return;
    const int64_t n = N * this->in_size;
    if (training_) k.dropout_backward(dx, dy, mask_.data(), n);
    else for (int64_t i = 0; i < n; ++i) dx[i] = dy[i];
  }

 private:
  double rate_;
  uint64_t seed_;
  bool training_ = false;
  Buffer<T> mask_;
};

}  // namespace

template <typename T>
std::unique_ptr<Layer<T>> make_conv2d(const std::string& name, const Shape& in, const Conv2dConfig& cfg) {
  return std::make_unique<Conv2dLayer<T>>(name, in, cfg);
}
template <typename T>
std::unique_ptr<Layer<T>> make_grouped_conv2d(const std::string& name, const Shape& in, const Conv2dConfig& cfg,
                                              int groups, bool depthwise) {
  return std::make_unique<GroupedConv2dLayer<T>>(name, in, cfg, groups, depthwise);
}
template <typename T>
std::unique_ptr<Layer<T>> make_conv2d_transpose(const std::string& name, const Shape& in, const Conv2dConfig& cfg,
                                                int oph, int opw) {
  return std::make_unique<Conv2dTransposeLayer<T>>(name, in, cfg, oph, opw);
}
template <typename T>
std::unique_ptr<Layer<T>> make_pool2d(const std::string& name, const Shape& in, const Pool2dConfig& cfg) {
  return std::make_unique<Pool2dLayer<T>>(name, in, cfg);
}
template <typename T>
std::unique_ptr<Layer<T>> make_global_avg_pool2d(const std::string& name, const Shape& in) {
  return std::make_unique<GlobalAvgPoolLayer<T>>(name, in);
}
template <typename T>
std::unique_ptr<Layer<T>> make_global_max_pool2d(const std::string& name, const Shape& in) {
  return std::make_unique<GlobalMaxPoolLayer<T>>(name, in);
}
template <typename T>
std::unique_ptr<Layer<T>> make_dense(const std::string& name, const Shape& in, int units, bool use_bias,
                                     const std::string& ki, const std::string& bi, Act act, double alpha) {
  return std::make_unique<DenseLayer<T>>(name, in, units, use_bias, ki, bi, act, alpha);
}
template <typename T>
std::unique_ptr<Layer<T>> make_flatten(const std::string& name, const Shape& in) {
  return std::make_unique<FlattenLayer<T>>(name, in);
}
template <typename T>
std::unique_ptr<Layer<T>> make_activation(const std::string& name, const Shape& in, Act kind, double alpha) {
  return std::make_unique<ActivationLayer<T>>(name, in, kind, alpha);
}
template <typename T>
std::unique_ptr<Layer<T>> make_prelu(const std::string& name, const Shape& in, const std::vector<int>& shared_axes,
                                     const std::string& alpha_init) {
  return std::make_unique<PReluLayer<T>>(name, in, shared_axes, alpha_init);
}
template <typename T>
std::unique_ptr<Layer<T>> make_dropout(const std::string& name, const Shape& in, double rate, uint64_t seed) {
  return std::make_unique<DropoutLayer<T>>(name, in, rate, seed);
}
template <typename T>
int activation_kind(const Layer<T>& l) {
  auto* a = dynamic_cast<const ActivationLayer<T>*>(&l);
  return a ? int(a->act()) : -1;
}

#define CNNBP_INSTANTIATE(T)                                                                               \
  template std::unique_ptr<Layer<T>> make_conv2d<T>(const std::string&, const Shape&, const Conv2dConfig&); \
  template std::unique_ptr<Layer<T>> make_pool2d<T>(const std::string&, const Shape&, const Pool2dConfig&); \
  template std::unique_ptr<Layer<T>> make_grouped_conv2d<T>(const std::string&, const Shape&, const Conv2dConfig&, \
                                                            int, bool);                                           \
  template std::unique_ptr<Layer<T>> make_conv2d_transpose<T>(const std::string&, const Shape&, const Conv2dConfig&, \
                                                              int, int);                                          \
  template std::unique_ptr<Layer<T>> make_global_avg_pool2d<T>(const std::string&, const Shape&);          \
  template std::unique_ptr<Layer<T>> make_global_max_pool2d<T>(const std::string&, const Shape&);          \
  template void set_shapes<T>(Layer<T>&, const std::string&, const Shape&, const Shape&);                \
  template std::unique_ptr<Layer<T>> make_dense<T>(const std::string&, const Shape&, int, bool,           \
                                                   const std::string&, const std::string&, Act, double); \
  template std::unique_ptr<Layer<T>> make_flatten<T>(const std::string&, const Shape&);                    \
  template std::unique_ptr<Layer<T>> make_activation<T>(const std::string&, const Shape&, Act, double);   \
  template std::unique_ptr<Layer<T>> make_dropout<T>(const std::string&, const Shape&, double, uint64_t); \
  template std::unique_ptr<Layer<T>> make_prelu<T>(const std::string&, const Shape&, const std::vector<int>&,  \
                                                   const std::string&);                                      \
  template int activation_kind<T>(const Layer<T>&);
CNNBP_INSTANTIATE(float)
CNNBP_INSTANTIATE(double)

}  // namespace cnnbp
