// Shared helpers for the pybind11 bindings: array conversion and shape checks at the edge.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "core/check.h"
#include "kernels/kernels.h"
#include "nn/layer.h"

namespace py = pybind11;

namespace cnnbp {

// C-contiguous array of T; converts (copies) only when it must.
template <typename T>
using carray = py::array_t<T, py::array::c_style | py::array::forcecast>;

inline std::string py_shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  if (a.ndim() == 1) s += ",";
  return s + ")";
}

inline Shape array_shape(const py::array& a) {
  Shape s;
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s.push_back(int(a.shape(i)));
  return s;
}

template <typename T>
py::array_t<T> new_array(const std::vector<py::ssize_t>& shape) {
  return py::array_t<T>(shape);
}

void bind_ops_module(py::module_& m);
void bind_data_module(py::module_& m);
void bind_network_module(py::module_& m);

// The float table for an explicitly named ISA (tests compare every path in one process).
template <typename T>
const KernelTable<T>& table_named(const std::string& isa);

}  // namespace cnnbp
