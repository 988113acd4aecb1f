// cnnbp._core: the extension module. Exceptions: std::invalid_argument -> ValueError,
// std::out_of_range -> IndexError, std::bad_alloc -> MemoryError (pybind11's defaults),
// cnnbp::NumericalError -> cnnbp.NumericalError.
#include "bindings/common.h"
#include <atomic>

#include "core/buffer.h"
#include "core/cpu.h"
#include "kernels/bf16.h"
#include "core/memory.h"
#include "nn/network.h"
#include "core/parallel.h"

#ifndef CNNBP_VERSION
#define CNNBP_VERSION "0.0.0"
#endif

PYBIND11_MODULE(_core, m) {
  namespace cb = cnnbp;
  m.doc() = "cnnbp C++ core: kernels, network and training step.";
  m.attr("__version__") = CNNBP_VERSION;
  py::register_exception<cb::NumericalError>(m, "NumericalError", PyExc_ArithmeticError);

  m.def("get_num_threads", &cb::get_num_threads, "Threads cnnbp's parallel regions use.");
  m.def("set_num_threads", &cb::set_num_threads, py::arg("n"), "Set the thread count of cnnbp's parallel regions.");
  m.def("_buffer_allocations", &cb::buffer_allocations,
        "Buffers allocated so far (a steady-state training step allocates none).");
  m.def("_threads_in_region", [] { return cb::threads_in_region(cb::get_num_threads()); },
        py::call_guard<py::gil_scoped_release>(),
        "How many distinct threads run the chunks of one parallel region with the current setting (tests).");
  m.def("_in_forked_child", &cb::in_forked_child);
  m.def("_mxcsr", [] {
#if defined(__x86_64__) || defined(_M_X64)
    return int(_mm_getcsr());
#else
    return -1;
#endif
  }, "The calling thread's MXCSR (tests: cnnbp leaves it as it was).");
  m.def("_mxcsr_in_region", [] {
    std::atomic<int> seen{0};
    cb::parallel_region(cb::get_num_threads(), [&](int tid, int) {
#if defined(__x86_64__) || defined(_M_X64)
      if (tid == 0) seen = int(_mm_getcsr());
#else
      (void)tid;
      seen = -1;
#endif
    });
    return seen.load();
  }, "MXCSR as cnnbp's parallel work sees it (tests).");
  m.def("_live_networks", &cb::live_networks, "C++ networks alive (tests).");
  m.def("activation_names", [] {
    std::vector<std::string> v(cb::kActNames, cb::kActNames + cb::kActKinds);
    return v;
  }, "The C++ activation kinds by name, in their enum order.");
  m.def("loss_names", [] {
    std::vector<std::string> v(cb::kLossNames, cb::kLossNames + cb::kLossKinds);
    return v;
  }, "The C++ loss kinds by name, in their enum order.");
  m.def("cpu_capability", [] { return std::string(cb::capability_name(cb::cpu_capability())); },
        "The kernel path in use: 'avx512', 'avx2', 'neon' (aarch64) or 'baseline'.");
  m.def("detected_capability", [] { return std::string(cb::capability_name(cb::detected_capability())); },
        "The best path this CPU supports.");
  m.def("compiled_capabilities", [] {
    std::vector<std::string> out;
    for (int c = 0; c < cb::kNumCapabilities; ++c)
      if (cb::compiled_capability(cb::CpuCapability(c))) out.push_back(cb::capability_name(cb::CpuCapability(c)));
    return out;
  }, "The kernel paths built into this extension.");
  m.def("bf16_path", [] { return std::string(cb::bf16_path_name(cb::bf16_path())); },
        "The mixed_bfloat16 kernels in use: 'avx512_bf16' (vdpbf16ps) or 'emulated' (CNNBP_BF16=emulated forces it).");
  m.def("conv_algo_setting", [] { return std::string(cb::conv_algo_setting_name()); },
        "CNNBP_CONV_ALGO as read at import: 'heuristic' (unset), 'direct', 'winograd2', 'winograd4' or 'auto'.");
  m.def("bf16_detected", [] { return std::string(cb::bf16_path_name(cb::bf16_detected())); },
        "'avx512_bf16' when the CPU (and this build) can run the bf16 kernels, else 'emulated'.");
  m.def("build_info", [] {
    py::dict d;
#ifdef CNNBP_NO_THREADS
    d["threads"] = py::none();
#else
    d["threads"] = "pool";
#endif
    d["compiler"] = __VERSION__;
    d["version"] = CNNBP_VERSION;
    return d;
  });

  m.def("memory_budget", [] {
    const cb::MemoryBudget b = cb::memory_budget();
    return py::make_tuple(b.bytes < 0 ? py::object(py::none()) : py::object(py::int_(b.bytes)), b.source);
  }, "(bytes, source): the most memory a plan may take now (None when unknown), and which limit sets it.");

  py::module_ ops = m.def_submodule("ops", "Kernels on numpy arrays.");
  cb::bind_ops_module(ops);
  cb::bind_data_module(m);
  cb::bind_network_module(m);
}
