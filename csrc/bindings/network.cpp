// cnnbp._core.Network32 / Network64: the C++ network behind cnnbp.Model.
#include <cstring>

#include "bindings/common.h"
#include "nn/network.h"
#include "nn/registry.h"
#include "core/parallel.h"

namespace cnnbp {

namespace {

using Pair = std::pair<int, int>;

LossKind loss_from_name(const std::string& s) {
  for (int k = 0; k < kLossKinds; ++k)
    if (s == kLossNames[k]) return LossKind(k);
  throw std::invalid_argument("unknown loss '" + s + "'");
}

const char* loss_name(LossKind k) { return int(k) >= 0 && int(k) < kLossKinds ? kLossNames[int(k)] : "?"; }

LayerConfig config_from_dict(const py::dict& d) {
  LayerConfig c;
  for (auto item : d) {
    const std::string key = py::str(item.first);
    py::handle v = item.second;
    if (v.is_none()) continue;
    if (py::isinstance<py::bool_>(v)) {
      c.set(key, v.cast<bool>());
    } else if (py::isinstance<py::int_>(v)) {
      // Seeds are unsigned 64-bit: keep their bits.
      const py::int_ i = py::reinterpret_borrow<py::int_>(v);
      if (i >= py::int_(0) && i > py::int_(INT64_MAX)) c.set(key, int64_t(v.cast<uint64_t>()));
      else c.set(key, v.cast<int64_t>());
    } else if (py::isinstance<py::float_>(v)) {
      c.set(key, v.cast<double>());
    } else if (py::isinstance<py::str>(v)) {
      c.set(key, v.cast<std::string>());
    } else if (py::isinstance<py::sequence>(v)) {
      c.set(key, v.cast<std::vector<int64_t>>());
    } else {
      throw std::invalid_argument("layer option '" + key + "': unsupported value " + std::string(py::repr(v)));
    }
  }
  return c;
}

py::list param_list(const std::vector<ParamInfo>& ps) {
  py::list out;
  for (auto& p : ps) out.append(py::make_tuple(p.name, p.shape, p.offset, p.size));
  return out;
}

template <typename T>
void check_input(const Network<T>& net, const py::array& x) {
  const Shape& in = net.input_shape();
  bool ok = x.ndim() == py::ssize_t(in.size()) + 1;
  for (size_t i = 0; ok && i < in.size(); ++i) ok = x.shape(i + 1) == in[i];
  CNNBP_CHECK(ok, "model input: expected shape ", shape_str(in, true), ", got ", py_shape_str(x));
}

// An optional [N] array of per-sample loss weights (finite, >= 0); null when None.
template <typename T>
const T* sample_weights(const py::object& sw, const py::array& x, carray<T>& keep) {
  if (sw.is_none()) return nullptr;
  keep = carray<T>::ensure(sw);
  CNNBP_CHECK(keep && keep.ndim() == 1 && keep.shape(0) == x.shape(0), "sample_weight: expected ", x.shape(0),
              " weights (one per sample), got ", keep ? py_shape_str(keep) : std::string("a non-numeric value"));
  const T* w = keep.data();
  for (py::ssize_t i = 0; i < keep.shape(0); ++i)
    CNNBP_CHECK(std::isfinite(double(w[i])) && w[i] >= 0, "sample_weight: weights must be finite and >= 0, got ",
                double(w[i]), " at index ", i);
  return w;
}

template <typename T>
void check_target_shape(Network<T>& net, const py::array& x, const py::array& y) {
  const py::ssize_t N = x.shape(0);
  CNNBP_CHECK(y.ndim() >= 1 && y.shape(0) == N, "targets: expected ", N, " rows (one per input sample), got shape ",
              py_shape_str(y));
  const int K = net.output_classes();
  if (loss_is_sparse(net.loss_kind())) {
    CNNBP_CHECK(y.ndim() == 1 || (y.ndim() == 2 && y.shape(1) == 1),
                "targets: sparse categorical loss expects integer labels of shape (", N, ",), got ", py_shape_str(y));
  } else {
    CNNBP_CHECK(y.size() == N * K, "targets: expected shape ", shape_str(net.output_shape(), true), " (", K,
                " values per sample), got ", py_shape_str(y));
  }
}

template <typename T>
py::array_t<T> view(py::object owner, T* data, const std::vector<py::ssize_t>& shape) {
  return py::array_t<T>(shape, data, owner);
}

template <typename T>
void bind_network(py::module_& m, const char* cls) {
  using Net = Network<T>;
  py::class_<Net>(m, cls, "The C++ network: layers in order, flat parameter/gradient buffers, the training step.")
      .def(py::init([](const std::vector<int>& shape) { return new Net(shape); }), py::arg("input_shape"))
      .def("add_layer",
           [](Net& n, const std::string& kind, const std::string& name, py::object inputs, const py::dict& config) {
             std::vector<int> ins;
             if (inputs.is_none()) ins.push_back(int(n.layers().size()) - 1);
             else ins = inputs.cast<std::vector<int>>();
             std::vector<Shape> shapes;
             std::vector<std::string> names;
             for (int t : ins) {
               shapes.push_back(n.tensor_shape(t));
               names.push_back(t < 0 ? std::string("the model input") : n.layers()[t]->name);
             }
             return n.add(make_layer<T>(kind, name, shapes, names, config_from_dict(config)), ins);
           },
           py::arg("kind"), py::arg("name"), py::arg("inputs") = py::none(), py::arg("config") = py::dict(),
           "Append a node of the given kind (see cnnbp._core.layer_kinds()) reading the outputs of nodes "
           "`inputs` (-1: the model input; None: the last node); config holds its options. Returns its index.")
      .def_property_readonly("input_shape", [](Net& n) { return n.input_shape(); })
      .def("tensor_shape", [](Net& n, int t) { return n.tensor_shape(t); }, py::arg("node"),
           "Per-sample shape of node t's output (-1: the model input).")
      .def_property_readonly("num_nodes", [](Net& n) { return n.layers().size(); })
      .def_property_readonly("output_shape", [](Net& n) { return n.output_shape(); })
      .def_property_readonly("num_params", [](Net& n) {
        int64_t c = 0;
        for (auto& l : n.layers()) for (auto& p : l->params) c += p.size;
        return c;
      }, "Parameters (trained or frozen), without the alignment padding of the flat buffer.")
      .def_property_readonly("num_state", [](Net& n) {
        int64_t c = 0;
        for (auto& l : n.layers()) for (auto& p : l->state) c += p.size;
        return c;
      }, "Non-trainable state values (moving statistics).")
      .def("set_trainable",
           [](Net& n, size_t i, bool on) {
             std::lock_guard<std::mutex> g(n.mutex());
             n.set_trainable(i, on);
           },
           py::arg("node"), py::arg("trainable"),
           "Freeze (False) or unfreeze node i: no parameter gradient, no update; BatchNormalization then "
           "normalises with its moving statistics.")
      .def_property("folding", &Net::folding,
                    [](Net& n, bool on) {
                      std::lock_guard<std::mutex> g(n.mutex());
                      n.set_folding(on);
                    },
                    "predict/evaluate fold inference BatchNormalization into the convolution before it.")
      .def_property_readonly("folded_pairs", &Net::folded_pairs,
                             "Convolution + BatchNormalization pairs that predict/evaluate fold.")
      .def_property("pool_fusion", &Net::pool_fusion,
                    [](Net& n, bool on) {
                      std::lock_guard<std::mutex> g(n.mutex());
                      n.set_pool_fusion(on);
                    },
                    "train_step/predict/evaluate run a convolution read only by the pooling after it "
                    "image by image, pooling each image as it is computed.")
      .def_property_readonly("pooled_pairs", &Net::pooled_pairs,
                             "Convolution + pooling pairs the last pass ran image by image.")
      .def_property("prologue_fusion", &Net::prologue_fusion,
                    [](Net& n, bool on) {
                      std::lock_guard<std::mutex> g(n.mutex());
                      n.set_prologue_fusion(on);
                    },
                    "train_step/compute_gradients let a convolution apply the BatchNormalization+ReLU "
                    "before it (its only reader) as it loads that layer's input: the normalised tensor "
                    "is never stored.")
      .def_property_readonly("prologue_pairs", &Net::prologue_pairs,
                             "BatchNormalization + convolution pairs the last pass ran fused.")
      .def("plan_bytes",
           [](Net& n, int N) {
             CNNBP_CHECK(N > 0, "plan_bytes: expected a positive batch size, got ", N);
             const auto b = n.plan_bytes(N, get_num_threads());
             py::dict d;
             d["params"] = b.params;
             d["grads"] = b.grads;
             d["optimizer"] = b.optimizer;
             d["state"] = b.state;
             d["activations"] = b.activations;
             d["gradients"] = b.gradients;
             d["workspace"] = b.workspace;
             d["layers"] = b.layers;
             d["total"] = b.total();
             d["largest"] = b.largest;
             d["largest_layer"] = b.largest_name;
             return d;
           },
           py::arg("batch_size"), "Bytes a training step with this batch size holds, by kind.")
      .def("finalize", &Net::finalize, py::arg("seed"), py::arg("keys") = std::vector<int64_t>(),
           "Allocate the flat buffers and initialise every parameter (keys: the nodes' layout order "
           "and initial draws, default their indices).")
      .def("initialize", [](Net& n, uint64_t seed) { std::lock_guard<std::mutex> g(n.mutex()); n.initialize(seed); }, py::arg("seed"))
      .def("layer_info",
           [](Net& n) {
             py::list out;
             for (size_t i = 0; i < n.layers().size(); ++i) {
               auto& l = n.layers()[i];
               py::dict d;
               d["name"] = l->name;
               d["kind"] = l->kind();
               d["inputs"] = n.node_inputs(i);
               d["input_shape"] = l->in_shape;
               d["output_shape"] = l->out_shape;
               d["params"] = param_list(l->params);
               d["state"] = param_list(l->state);
               d["trainable"] = l->trainable;
               out.append(d);
             }
             return out;
           })
      .def("param_view",
           [](py::object self, int64_t offset, const std::vector<py::ssize_t>& shape, bool grad) {
             Net& n = self.cast<Net&>();
             CNNBP_CHECK(n.finalized(), "model is not built");
             int64_t sz = 1;
             for (auto d : shape) sz *= d;
             CNNBP_CHECK_INDEX(offset >= 0 && offset + sz <= n.num_params(), "param_view: out of range");
             return view<T>(self, (grad ? n.grads() : n.params()) + offset, shape);
           },
           py::arg("offset"), py::arg("shape"), py::arg("grad") = false,
           "A numpy view of part of the flat parameter (or gradient) buffer; it keeps the network alive.")
      .def("state_view",
           [](py::object self, int64_t offset, const std::vector<py::ssize_t>& shape) {
             Net& n = self.cast<Net&>();
             CNNBP_CHECK(n.finalized(), "model is not built");
             int64_t sz = 1;
             for (auto d : shape) sz *= d;
             CNNBP_CHECK_INDEX(offset >= 0 && offset + sz <= n.num_state(), "state_view: out of range");
             return view<T>(self, n.state() + offset, shape);
           },
           py::arg("offset"), py::arg("shape"), "A numpy view of part of the flat state buffer (moving statistics).")
      .def("flat_state", [](py::object self) { Net& n = self.cast<Net&>(); return view<T>(self, n.state(), {py::ssize_t(n.num_state())}); })
      .def("flat_params", [](py::object self) { Net& n = self.cast<Net&>(); return view<T>(self, n.params(), {py::ssize_t(n.num_params())}); })
      .def("flat_grads", [](py::object self) { Net& n = self.cast<Net&>(); return view<T>(self, n.grads(), {py::ssize_t(n.num_params())}); })
      .def("optimizer_state",
           [](py::object self) {
             Net& n = self.cast<Net&>();
             py::list out;
             for (int i = 0; i < n.opt_state_count(); ++i) out.append(view<T>(self, n.opt_state(i), {py::ssize_t(n.num_params())}));
             return out;
           },
           "Views of the optimizer's state buffers (momentum; or Adam's m and v).")
      .def("set_loss",
           [](Net& n, const std::string& kind, double eps, bool fuse, double delta, double smoothing) {
             CNNBP_CHECK(std::isfinite(delta) && delta > 0, "Huber: expected delta > 0, got ", delta);
             n.set_loss(loss_from_name(kind), eps, fuse, delta, smoothing);
           },
           py::arg("kind"), py::arg("epsilon") = 1e-7, py::arg("fuse") = true, py::arg("delta") = 1.0,
           py::arg("label_smoothing") = 0.0)
      .def("set_metrics",
           [](Net& n, const std::vector<std::tuple<int, int, double, int, int>>& specs) {
             std::vector<MetricSpec> v;
             for (const auto& t : specs) {
               MetricSpec m;
               m.kind = MetricKind(std::get<0>(t));
               m.k = std::get<1>(t);
               m.threshold = std::get<2>(t);
               m.class_id = std::get<3>(t);
               m.bins = std::get<4>(t);
               v.push_back(m);
             }
             std::lock_guard<std::mutex> g(n.mutex());
             n.set_metrics(v);
           },
           py::arg("specs"), "Metrics as (kind, k, threshold, class_id, bins) tuples (kernels/metric.h).")
      .def("metric_sums",
           [](Net& n) {
             const auto& s = n.metric_sums();
             py::array_t<double> a(py::ssize_t(s.size()));
             if (!s.empty()) std::memcpy(a.mutable_data(), s.data(), sizeof(double) * s.size());
             return a;
           },
           "The metric sums of the last batch (a copy).")
      .def_property_readonly("loss", [](Net& n) { return std::string(loss_name(n.loss_kind())); })
      .def_property_readonly("loss_fused", &Net::loss_fused)
      .def("set_sgd",
           [](Net& n, double lr, double momentum, bool nesterov, double wd, double coupled) {
             OptimizerConfig c;
             c.kind = OptKind::sgd;
             c.lr = lr;
             c.momentum = momentum;
             c.nesterov = nesterov;
             c.weight_decay = wd;
             c.coupled_decay = coupled;
             n.set_optimizer(c);
           },
           py::arg("learning_rate"), py::arg("momentum"), py::arg("nesterov"), py::arg("weight_decay"),
           py::arg("coupled_weight_decay") = 0.0,
           "SGD; weight_decay is decoupled (Keras 3), coupled_weight_decay adds coupled_weight_decay * p to the "
           "gradient (PyTorch's SGD weight_decay).")
      .def("set_adam",
           [](Net& n, double lr, double b1, double b2, double eps, double wd) {
             OptimizerConfig c;
             c.kind = OptKind::adam;
             c.lr = lr;
             c.beta1 = b1;
             c.beta2 = b2;
             c.eps = eps;
             c.weight_decay = wd;
             n.set_optimizer(c);
           },
           py::arg("learning_rate"), py::arg("beta_1"), py::arg("beta_2"), py::arg("epsilon"), py::arg("weight_decay"))
      .def("set_adaptive",
           [](Net& n, const std::string& kind, double lr, double b1, double b2, double eps, double rho,
              double momentum, bool centered, double initial_accumulator, double wd) {
             static const std::pair<const char*, OptKind> kinds[] = {
                 {"rmsprop", OptKind::rmsprop}, {"adagrad", OptKind::adagrad}, {"adadelta", OptKind::adadelta},
                 {"adamax", OptKind::adamax},   {"nadam", OptKind::nadam},     {"lion", OptKind::lion}};
             OptimizerConfig c;
             bool found = false;
             for (const auto& k : kinds)
               if (kind == k.first) {
                 c.kind = k.second;
                 found = true;
               }
             CNNBP_CHECK(found, "set_adaptive: unknown optimizer kind '", kind, "'");
             c.lr = lr;
             c.beta1 = b1;
             c.beta2 = b2;
             c.eps = eps;
             c.rho = rho;
             c.momentum = momentum;
             c.centered = centered;
             c.initial_accumulator = initial_accumulator;
             c.weight_decay = wd;
             n.set_optimizer(c);
           },
           py::arg("kind"), py::arg("learning_rate"), py::arg("beta_1") = 0.9, py::arg("beta_2") = 0.999,
           py::arg("epsilon") = 1e-7, py::arg("rho") = 0.9, py::arg("momentum") = 0.0, py::arg("centered") = false,
           py::arg("initial_accumulator_value") = 0.1, py::arg("weight_decay") = 0.0,
           "The adaptive optimizers (formulas in csrc/optim/optim.h).")
      .def_property("learning_rate", [](Net& n) { return n.optimizer().lr; },
                    [](Net& n, double lr) {
                      CNNBP_CHECK(lr >= 0 && std::isfinite(lr), "learning_rate: expected a finite value >= 0, got ", lr);
                      n.set_learning_rate(lr);
                    })
      .def_property("iterations", &Net::iterations, &Net::set_iterations)
      .def("train_step",
           [](Net& n, carray<T> x, carray<T> y, py::object sample_weight) {
             check_input(n, x);
             check_target_shape(n, x, y);
             CNNBP_CHECK(x.shape(0) > 0, "train_step: expected a non-empty batch");
             carray<T> keep;
             const T* sw = sample_weights<T>(sample_weight, x, keep);
             StepResult r;
             {
               py::gil_scoped_release nogil;
               std::lock_guard<std::mutex> g(n.mutex());
               r = n.train_step(x.data(), y.data(), int(x.shape(0)), sw);
             }
             return py::make_tuple(r.loss, r.correct);
           },
           py::arg("x"), py::arg("y"), py::arg("sample_weight") = py::none(),
           "Forward, loss, backward and update on one batch: (mean loss, correct count). The loss includes the "
           "regularization penalties; sample_weight: per-sample loss weights (sum_i w_i loss_i / N).")
      .def("compute_gradients",
           [](Net& n, carray<T> x, carray<T> y, double grad_scale, py::object grads_ready, py::object sample_weight) {
             check_input(n, x);
             check_target_shape(n, x, y);
             CNNBP_CHECK(x.shape(0) > 0, "compute_gradients: expected a non-empty batch");
             carray<T> keep;
             const T* sw = sample_weights<T>(sample_weight, x, keep);
             typename Net::GradsReady hook;
             if (!grads_ready.is_none()) {
               CNNBP_CHECK(PyCallable_Check(grads_ready.ptr()), "compute_gradients: grads_ready must be callable");
               hook = [&grads_ready](int64_t b, int64_t e) {
                 py::gil_scoped_acquire gil;
                 grads_ready(b, e);
               };
             }
             StepResult r;
             {
               py::gil_scoped_release nogil;
               std::lock_guard<std::mutex> g(n.mutex());
               r = n.compute_gradients(x.data(), y.data(), int(x.shape(0)), grad_scale, hook, sw);
             }
             return py::make_tuple(r.loss, r.correct);
           },
           py::arg("x"), py::arg("y"), py::arg("grad_scale") = 1.0, py::arg("grads_ready") = py::none(),
           py::arg("sample_weight") = py::none(),
           "Forward, loss and backward on one batch, gradients times grad_scale, no update: (mean loss, "
           "correct count). The data-parallel step: all-reduce flat_grads(), then apply_update(). "
           "grads_ready(begin, end), if given, is called as each layer's gradient range of flat_grads() "
           "becomes final (last layer first), so its reduction can start during the backward pass.")
      .def_property("rng_stream", &Net::rng_stream, &Net::set_rng_stream,
                    "Dropout stream (the rank in data-parallel training; 0 = single process).")
      .def("forward",
           [](Net& n, carray<T> x, bool training, const std::vector<int>& keep) {
             check_input(n, x);
             const int N = int(x.shape(0));
             std::vector<py::ssize_t> shape{x.shape(0)};
             for (int d : n.output_shape()) shape.push_back(d);
             py::array_t<T> out(shape);
             {
               py::gil_scoped_release nogil;
               std::lock_guard<std::mutex> g(n.mutex());
               n.forward(x.data(), N, training, keep);
               std::memcpy(out.mutable_data(), n.layers().empty() ? x.data() : n.activation(n.layers().size() - 1),
                           sizeof(T) * out.size());
             }
             return out;
           },
           py::arg("x"), py::arg("training") = false, py::arg("keep") = std::vector<int>(),
           "Full forward pass; keeps what backward needs, the output, and the outputs of nodes `keep` "
           "(activation(i) of any other node may be an error: its buffer was reused).")
      .def("backward",
           [](Net& n, carray<T> y, bool input_grad) -> py::tuple {
             CNNBP_CHECK(n.last_batch() > 0, "backward: call forward first");
             std::vector<py::ssize_t> xs{py::ssize_t(n.last_batch())};
             for (int d : n.input_shape()) xs.push_back(d);
             py::array_t<T> dummy(xs);
             check_target_shape(n, dummy, y);
             py::array_t<T> dx(xs);
             StepResult r;
             {
               py::gil_scoped_release nogil;
               std::lock_guard<std::mutex> g(n.mutex());
               r = n.loss_backward(y.data(), n.last_batch(), input_grad ? dx.mutable_data() : nullptr);
             }
             return py::make_tuple(r.loss, r.correct, input_grad ? py::object(dx) : py::object(py::none()));
           },
           py::arg("y"), py::arg("input_grad") = false,
           "Loss on the last forward pass and backward into the gradient buffer: (loss, correct, dx or None).")
      .def("backward_from_output",
           [](Net& n, carray<T> dout, bool input_grad) -> py::object {
             CNNBP_CHECK(n.last_batch() > 0, "backward_from_output: call forward first");
             std::vector<py::ssize_t> os{py::ssize_t(n.last_batch())}, xs{py::ssize_t(n.last_batch())};
             for (int d : n.output_shape()) os.push_back(d);
             for (int d : n.input_shape()) xs.push_back(d);
             CNNBP_CHECK(array_shape(dout) == Shape(os.begin(), os.end()), "backward_from_output: expected gradient of shape ",
                         shape_str(n.output_shape(), true), " with batch ", n.last_batch(), ", got ", py_shape_str(dout));
             py::array_t<T> dx(xs);
             {
               py::gil_scoped_release nogil;
               std::lock_guard<std::mutex> g(n.mutex());
               n.backward_from_output(dout.data(), n.last_batch(), input_grad ? dx.mutable_data() : nullptr);
             }
             return input_grad ? py::object(dx) : py::object(py::none());
           },
           py::arg("dout"), py::arg("input_grad") = true, "Backward from a given output gradient (saliency maps).")
      .def("backward_between",
           [](Net& n, carray<T> dout, size_t from, size_t stop) {
             CNNBP_CHECK(n.last_batch() > 0, "backward_between: call forward first");
             CNNBP_CHECK_INDEX(stop < from && from <= n.layers().size(), "backward_between: need 0 <= stop < from <= ",
                               n.layers().size(), ", got stop ", stop, ", from ", from);
             std::vector<py::ssize_t> os{py::ssize_t(n.last_batch())}, gs{py::ssize_t(n.last_batch())};
             for (int d : n.layers()[from - 1]->out_shape) os.push_back(d);
             for (int d : n.layers()[stop]->in_shape) gs.push_back(d);
             CNNBP_CHECK(array_shape(dout) == Shape(os.begin(), os.end()), "backward_between: expected a gradient of shape ",
                         shape_str(n.layers()[from - 1]->out_shape, true), " with batch ", n.last_batch(), ", got ",
                         py_shape_str(dout));
             py::array_t<T> g(gs);
             {
               py::gil_scoped_release nogil;
               std::lock_guard<std::mutex> lk(n.mutex());
               n.backward_between(dout.data(), n.last_batch(), from, stop, g.mutable_data());
             }
             return g;
           },
           py::arg("dout"), py::arg("from_layer"), py::arg("stop_layer"),
           "Backward through layers [stop_layer, from_layer) of the last forward pass: dout is the gradient "
           "of layer from_layer-1's output; returns the gradient of layer stop_layer's input.")
      .def("backward_to",
           [](Net& n, carray<T> dout, size_t from, int to) {
             CNNBP_CHECK(n.last_batch() > 0, "backward_to: call forward first");
             CNNBP_CHECK_INDEX(from >= 1 && from <= n.layers().size() && to >= -1 && to < int(from),
                               "backward_to: need -1 <= to < from <= ", n.layers().size(), ", got to ", to, ", from ", from);
             std::vector<py::ssize_t> os{py::ssize_t(n.last_batch())}, gs{py::ssize_t(n.last_batch())};
             for (int d : n.layers()[from - 1]->out_shape) os.push_back(d);
             for (int d : n.tensor_shape(to)) gs.push_back(d);
             CNNBP_CHECK(array_shape(dout) == Shape(os.begin(), os.end()), "backward_to: expected a gradient of shape ",
                         shape_str(n.layers()[from - 1]->out_shape, true), " with batch ", n.last_batch(), ", got ",
                         py_shape_str(dout));
             py::array_t<T> g(gs);
             {
               py::gil_scoped_release nogil;
               std::lock_guard<std::mutex> lk(n.mutex());
               n.backward_to(dout.data(), n.last_batch(), from, to, g.mutable_data());
             }
             return g;
           },
           py::arg("dout"), py::arg("from_node"), py::arg("to_node"),
           "Backward from node from_node-1 (dout: the gradient of its output) to the output of node to_node "
           "(-1: the model input), over the last forward pass; returns that gradient.")
      .def("apply_update",
           [](Net& n) {
             py::gil_scoped_release nogil;
             std::lock_guard<std::mutex> g(n.mutex());
             n.apply_update();
           },
           "One optimizer step over the flat buffers.")
      .def("predict",
           [](Net& n, carray<T> x) {
             check_input(n, x);
             std::vector<py::ssize_t> shape{x.shape(0)};
             for (int d : n.output_shape()) shape.push_back(d);
             py::array_t<T> out(shape);
             {
               py::gil_scoped_release nogil;
               std::lock_guard<std::mutex> g(n.mutex());
               n.predict(x.data(), int(x.shape(0)), out.mutable_data());
             }
             return out;
           },
           py::arg("x"), "Inference forward pass.")
      .def("evaluate",
           [](Net& n, carray<T> x, carray<T> y, py::object sample_weight) {
             check_input(n, x);
             check_target_shape(n, x, y);
             carray<T> keep;
             const T* sw = sample_weights<T>(sample_weight, x, keep);
             StepResult r;
             {
               py::gil_scoped_release nogil;
               std::lock_guard<std::mutex> g(n.mutex());
               r = n.evaluate(x.data(), y.data(), int(x.shape(0)), sw);
             }
             return py::make_tuple(r.loss, r.correct);
           },
           py::arg("x"), py::arg("y"), py::arg("sample_weight") = py::none(),
           "(mean loss, correct count) without updating (the loss includes the regularization penalties).")
      .def("set_gradient_config",
           [](Net& n, double clipnorm, double clipvalue, double global_clipnorm, const py::dict& sched) {
             for (double v : {clipnorm, clipvalue, global_clipnorm})
               CNNBP_CHECK(std::isfinite(v) && v >= 0, "optimizer: clipping thresholds must be finite and >= 0, got ", v);
             GradientConfig g;
             g.clipnorm = clipnorm, g.clipvalue = clipvalue, g.global_clipnorm = global_clipnorm;
             LrSchedule& h = g.schedule;
             for (auto item : sched) {
               const std::string k = py::str(item.first);
               py::handle v = item.second;
               if (k == "kind") h.kind = ScheduleKind(v.cast<int>());
               else if (k == "initial") h.initial = v.cast<double>();
               else if (k == "decay_steps") h.decay_steps = v.cast<double>();
               else if (k == "rate") h.rate = v.cast<double>();
               else if (k == "end") h.end = v.cast<double>();
               else if (k == "power") h.power = v.cast<double>();
               else if (k == "alpha") h.alpha = v.cast<double>();
               else if (k == "warmup_target") h.warmup_target = v.cast<double>(), h.warmup = true;
               else if (k == "warmup_steps") h.warmup_steps = v.cast<double>();
               else if (k == "t_mul") h.t_mul = v.cast<double>();
               else if (k == "m_mul") h.m_mul = v.cast<double>();
               else if (k == "staircase") h.staircase = v.cast<bool>();
               else if (k == "cycle") h.cycle = v.cast<bool>();
               else if (k == "boundaries") h.boundaries = v.cast<std::vector<double>>();
               else if (k == "values") h.values = v.cast<std::vector<double>>();
               else throw std::invalid_argument("learning rate schedule: unknown field '" + k + "'");
             }
             CNNBP_CHECK(int(h.kind) >= 0 && int(h.kind) <= int(ScheduleKind::cosine_restarts),
                         "learning rate schedule: unknown kind ", int(h.kind));
             std::lock_guard<std::mutex> lock(n.mutex());
             n.set_gradient_config(g);
           },
           py::arg("clipnorm") = 0.0, py::arg("clipvalue") = 0.0, py::arg("global_clipnorm") = 0.0,
           py::arg("schedule") = py::dict(),
           "Gradient clipping (one of the three) and the learning-rate schedule (see csrc/optim/schedule.h).")
      .def("learning_rate_at", &Net::learning_rate_at, py::arg("step"),
           "The learning rate of the update made after `step` updates.")
      .def("set_regularizers",
           [](Net& n, const std::vector<std::tuple<int, int64_t, int64_t, double, double>>& terms) {
             std::vector<RegTerm> v;
             for (const auto& t : terms)
               v.push_back({std::get<0>(t), std::get<1>(t), std::get<2>(t), std::get<3>(t), std::get<4>(t)});
             std::lock_guard<std::mutex> lock(n.mutex());
             n.set_regularizers(v);
           },
           py::arg("terms"), "Penalties (node, offset, size, l1, l2) on parameter ranges: l1 sum|w| + l2 sum w^2.")
      .def("regularization_loss", &Net::regularization_loss, "The penalties at the current weights.")
      .def_property("precision", &Net::precision,
                    [](Net& n, const std::string& name) {
                      std::lock_guard<std::mutex> g(n.mutex());
                      n.set_precision(name);
                    },
                    "Compute precision: 'float32' ('float64'), or 'mixed_bfloat16' (conv2d and dense in bf16 with "
                    "fp32 accumulation).")
      .def_property("check_numerics", &Net::check_numerics,
                    [](Net& n, bool on) {
                      std::lock_guard<std::mutex> g(n.mutex());
                      n.set_check_numerics(on);
                    },
                    "Debug: check every layer's output and gradients for NaN/Inf in each training step.")
      .def("set_profiling",
           [](Net& n, bool on) {
             std::lock_guard<std::mutex> g(n.mutex());
             n.set_profiling(on);
           },
           py::arg("on"), "Time every layer pass from now on (resets the totals).")
      .def_property("monitoring", &Net::monitoring,
                    [](Net& n, bool on) {
                      std::lock_guard<std::mutex> g(n.mutex());
                      n.set_monitoring(on);
                    },
                    "Whether the training monitor can be armed (allocates a copy of the parameters).")
      .def("monitor_next",
           [](Net& n, int steps, int samples) {
             std::lock_guard<std::mutex> g(n.mutex());
             n.monitor_next(steps, samples);
           },
           py::arg("steps") = 1, py::arg("samples") = 0,
           "Start an interval: the next training steps (each that completes an update) count in it "
           "until the next call, and `samples` of every `steps` of them (0: all; spread evenly, the "
           "first always) are read: their parameter norms, and ceil(batch / samples) samples of every "
           "output each.")
      .def("monitor_stats",
           [](Net& n) {
             std::lock_guard<std::mutex> g(n.mutex());
             const auto& m = n.monitor();
             const py::ssize_t L = py::ssize_t(n.layers().size()), K = Net::Monitor::kOutStats,
                               Q = Net::Monitor::kParamStats;
             py::array_t<double> out({L, K}), par({py::ssize_t(m.param_node.size()), Q});
             if (!m.out.empty()) std::memcpy(out.mutable_data(), m.out.data(), sizeof(double) * m.out.size());
             else std::fill(out.mutable_data(), out.mutable_data() + L * K, 0.0);
             if (!m.param.empty()) std::memcpy(par.mutable_data(), m.param.data(), sizeof(double) * m.param.size());
             py::list pnames;
             for (size_t i = 0; i < n.layers().size(); ++i)
               for (const auto& p : n.layers()[i]->params) pnames.append(py::make_tuple(int(i), p.name));
             py::dict d;
             d["step"] = m.step;
             d["steps"] = m.steps;
             d["sampled"] = m.sampled;
             d["output"] = out;
             d["param"] = par;
             d["param_names"] = pnames;
             return d;
           },
           "The statistics of the interval since monitor_next: step (iterations after its last step), "
           "steps (how many it holds), sampled (of which read), output [nodes, 8] summed over the read "
           "steps: elements, sum, sum of squares, zeros, |y|<=0.01, |y|>=0.99, BatchNormalization mean "
           "|batch mean| and mean batch variance (per step); param [tensors, 6]: sums over the read "
           "steps of |w|, |g| and |update|/|w|, the largest |g| and |update|/|w|, the read steps with "
           "|w| > 0; param_names [(node, name)].")
      .def("profile",
           [](Net& n) {
             std::lock_guard<std::mutex> g(n.mutex());
             const auto& p = n.profile();
             py::list layers;
             for (size_t i = 0; i < n.layers().size() && i < p.forward.size(); ++i) {
               py::dict d;
               d["name"] = n.layers()[i]->name;
               d["kind"] = n.layers()[i]->kind();
               d["forward_s"] = p.forward[i];
               d["backward_s"] = p.backward[i];
               layers.append(d);
             }
             py::dict out;
             out["layers"] = layers;
             out["loss_s"] = p.loss;
             out["update_s"] = p.update;
             out["steps"] = p.steps;
             return out;
           },
           "Seconds per layer pass summed over the train steps since set_profiling(True).")
      .def("activation",
           [](Net& n, size_t i) {
             std::lock_guard<std::mutex> g(n.mutex());
             CNNBP_CHECK_INDEX(i < n.layers().size(), "activation: layer index ", i, " out of range");
             std::vector<py::ssize_t> shape{py::ssize_t(n.last_batch())};
             for (int d : n.layers()[i]->out_shape) shape.push_back(d);
             py::array_t<T> out(shape);
             std::memcpy(out.mutable_data(), n.activation(i), sizeof(T) * out.size());
             return out;
           },
           py::arg("index"), "A copy of layer i's output from the last forward pass.");
}

}  // namespace

void bind_network_module(py::module_& m) {
  m.def("layer_kinds", &layer_kinds, "The layer kinds Network32/64.add_layer builds.");
  bind_network<float>(m, "Network32");
  bind_network<double>(m, "Network64");
}

}  // namespace cnnbp
