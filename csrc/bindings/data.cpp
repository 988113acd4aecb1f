// The input pipeline's one native step: gathering a batch's rows out of a training array of any
// numeric dtype (a uint8 image set, a memory-mapped .npy) into the float batch buffer, with the
// GIL released so that it overlaps the training step running in another thread. Serial: it runs
// beside the step's own parallel regions, not inside them.
#include <cstring>

#include "bindings/common.h"

namespace cnnbp {

namespace {

template <typename S, typename D>
void gather(D* out, const S* src, const int64_t* idx, int64_t k, int64_t n, int64_t row) {
  for (int64_t r = 0; r < k; ++r) {
    const int64_t i = idx ? idx[r] : r;
    CNNBP_CHECK_INDEX(i >= 0 && i < n, "gather_rows: row ", i, " out of range (", n, " rows)");
    const S* s = src + i * row;
    D* d = out + r * row;
    if constexpr (std::is_same_v<S, D>) {
      std::memcpy(d, s, sizeof(D) * size_t(row));
    } else {
      for (int64_t e = 0; e < row; ++e) d[e] = D(s[e]);
    }
  }
}

template <typename D>
void gather_into(py::array out, const py::array& src, const int64_t* idx, int64_t k) {
  const int64_t n = src.shape(0), row = n ? int64_t(src.size() / n) : 0;
  D* o = static_cast<D*>(out.mutable_data());
  const void* s = src.data();
  const int num = src.dtype().num();  // Python objects are touched only while the GIL is held
  py::gil_scoped_release nogil;
  switch (num) {
#define CNNBP_CASE(NPY, S) \
  case NPY: gather(o, static_cast<const S*>(s), idx, k, n, row); break;
    CNNBP_CASE(py::detail::npy_api::NPY_UBYTE_, uint8_t)
    CNNBP_CASE(py::detail::npy_api::NPY_BYTE_, int8_t)
    CNNBP_CASE(py::detail::npy_api::NPY_USHORT_, uint16_t)
    CNNBP_CASE(py::detail::npy_api::NPY_SHORT_, int16_t)
    CNNBP_CASE(py::detail::npy_api::NPY_INT_, int32_t)
    CNNBP_CASE(py::detail::npy_api::NPY_UINT_, uint32_t)
    CNNBP_CASE(py::detail::npy_api::NPY_LONG_, int64_t)
    CNNBP_CASE(py::detail::npy_api::NPY_LONGLONG_, long long)
    CNNBP_CASE(py::detail::npy_api::NPY_FLOAT_, float)
    CNNBP_CASE(py::detail::npy_api::NPY_DOUBLE_, double)
    CNNBP_CASE(py::detail::npy_api::NPY_BOOL_, bool)
#undef CNNBP_CASE
    default: throw std::invalid_argument("gather_rows: unsupported source dtype");
  }
}

}  // namespace

void bind_data_module(py::module_& m) {
  m.def("gather_rows",
        [](const py::array& src, py::object idx_obj, py::array out) {
          CNNBP_CHECK(src.ndim() >= 1 && (src.flags() & py::array::c_style), "gather_rows: the source must be a "
                      "C-contiguous array with a batch axis");
          CNNBP_CHECK(out.ndim() >= 1 && (out.flags() & py::array::c_style) && out.writeable(),
                      "gather_rows: out must be a writeable C-contiguous array");
          py::array_t<int64_t, py::array::c_style | py::array::forcecast> idx;
          int64_t k = out.shape(0);
          if (!idx_obj.is_none()) {
            idx = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(idx_obj);
            CNNBP_CHECK(idx && idx.ndim() == 1 && idx.shape(0) <= out.shape(0), "gather_rows: idx must be 1-D with at "
                        "most ", out.shape(0), " entries");
            k = idx.shape(0);
          } else {
            CNNBP_CHECK(src.shape(0) >= k, "gather_rows: the source has ", src.shape(0), " rows, out ", k);
          }
          const int64_t row_src = src.shape(0) ? int64_t(src.size() / src.shape(0)) : 0;
          const int64_t row_out = out.shape(0) ? int64_t(out.size() / out.shape(0)) : 0;
          CNNBP_CHECK(row_src == row_out, "gather_rows: rows of ", row_src, " and ", row_out, " elements");
          const int64_t* ip = idx_obj.is_none() ? nullptr : idx.data();
          if (py::isinstance<py::array_t<float>>(out)) gather_into<float>(out, src, ip, k);
          else if (py::isinstance<py::array_t<double>>(out)) gather_into<double>(out, src, ip, k);
          else throw std::invalid_argument("gather_rows: out must be float32 or float64");
        },
        py::arg("src"), py::arg("idx"), py::arg("out"),
        "out[r] = src[idx[r]] (idx None: src[r]) for the first len(idx) rows of out, converted to out's float "
        "dtype, without the GIL.");
}

}  // namespace cnnbp
