"""cnnbp: train convolutional neural networks on the CPU.

A C++17 core (SIMD kernels chosen at run time, its own thread pool) under a Keras-like API::

    import cnnbp
    from cnnbp.layers import Input, Conv2D, MaxPooling2D, Flatten, Dense
    x = Input((28, 28, 1))
    y = Dense(10, activation="softmax")(Flatten()(MaxPooling2D((2, 2))(Conv2D(32, (3, 3), activation="relu")(x))))
    model = cnnbp.Model(x, y)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=2, batch_size=32)
"""

from . import _core
from ._core import NumericalError
from ._seeding import set_seed
from . import callbacks, datasets, distributed, explain, io, layers, losses, metrics, mixed_precision, ops, optimizers, plot, report, utils
from . import applications
from .models import Model, Sequential
from .layers import Input
from .io import load_model
from .gradient_check import GradcheckResult, gradcheck

__version__ = _core.__version__

__all__ = [
    "Model", "Sequential", "Input", "NumericalError", "load_model", "layers", "losses", "metrics", "mixed_precision", "optimizers", "callbacks", "datasets",
    "ops", "utils", "explain", "plot", "report", "io", "distributed", "set_num_threads", "get_num_threads", "set_seed", "show_config", "cpu_capability",
    "gradcheck", "GradcheckResult",
    "__version__",
]


def set_num_threads(n):
    """Threads cnnbp's kernels use (default: OMP_NUM_THREADS if set, else the usable cores)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: expected an int, got {n!r}")
    _core.set_num_threads(n)


def get_num_threads():
    """Threads cnnbp's kernels use."""
    return _core.get_num_threads()


def cpu_capability():
    """The kernel path in use: 'avx512', 'avx2' or 'baseline' (CNNBP_CPU_CAPABILITY may lower it)."""
    return _core.cpu_capability()


def show_config(file=None):
    """Print the version, kernel path, threads and build options."""
    import sys
    info = _core.build_info()
    lines = [
        f"cnnbp {__version__}",
        f"  kernel path (ISA):  {_core.cpu_capability()} (CPU supports {_core.detected_capability()}; "
        f"built: {', '.join(_core.compiled_capabilities())})",
        f"  threads:            {_core.get_num_threads()}"
        + (" (a forked child: kernels run on the calling thread)" if _core._in_forked_child() else ""),
        "  thread pool:        cnnbp's own (spins briefly, then sleeps; shorter spins on a busy machine)"
        if info["threads"] is not None else
        "  thread pool:        not built in (CNNBP_THREADS=OFF): kernels run on the calling thread",
        f"  compiler:           {info['compiler']}",
        "  bfloat16 kernels:   " + ("avx512_bf16 (vdpbf16ps)" if _core.bf16_path() == "avx512_bf16" else
                                    "emulated (" + ("CNNBP_BF16 or a lowered kernel path" if _core.bf16_detected()
                                                    == "avx512_bf16" else "the CPU has no AVX512_BF16") + ")")
        + f"; policy {mixed_precision.global_policy().name}",
        f"  conv algorithm:     {_core.conv_algo_setting()} (CNNBP_CONV_ALGO; Winograd F(4x4,3x3) or F(2x2,3x3) "
        "for stride-1 3x3 float32 layers)",
    ]
    budget, source = _core.memory_budget()
    if budget is not None:
        lines.append(f"  memory budget:      {budget / 2**30:.3g} GiB ({source})")
    print("\n".join(lines), file=file or sys.stdout)
