"""Mixed precision, with Keras's names: ``set_global_policy("mixed_bfloat16")``.

Under the ``mixed_bfloat16`` policy, Conv2D, Conv2DTranspose and Dense layers multiply bfloat16
operands (inputs, weights and gradients rounded to nearest even) and accumulate in float32; the
weights the optimizer updates (the master copy), the tensors between layers, normalisation,
pooling, losses and optimizer state stay float32. Models take the global policy when they are
created (``Model(..., dtype=...)`` overrides it, as in Keras); the policy is saved with the model.

On a CPU with AVX512_BF16 the convolutions run ``vdpbf16ps`` (twice the multiply-adds per
instruction of float32 FMA); elsewhere the same numerics are emulated (operands rounded in float32
copies, then the float32 kernels), slower than plain float32. ``path()`` says which;
``CNNBP_BF16=emulated`` forces the emulation.
"""

from . import _core

__all__ = ["Policy", "set_global_policy", "global_policy", "path"]

_NAMES = {"float32": "float32", "float64": "float64", "mixed_bfloat16": "bfloat16"}


class Policy:
    """A dtype policy: ``name`` in 'float32', 'float64', 'mixed_bfloat16'; ``compute_dtype`` is
    what convolution and dense multiply in, ``variable_dtype`` what the weights are kept in."""

    def __init__(self, name):
        if isinstance(name, Policy):
            name = name.name
        if name not in _NAMES:
            hint = ""
            if name in ("mixed_float16", "float16", "bfloat16"):
                hint = ("; cnnbp trains on CPUs, where float16 has no fast path and pure bfloat16 weights lose "
                        "updates: use 'mixed_bfloat16'")
            raise ValueError(f"Policy: expected 'float32', 'float64' or 'mixed_bfloat16', got {name!r}{hint}")
        self.name = name

    @property
    def compute_dtype(self):
        return _NAMES[self.name]

    @property
    def variable_dtype(self):
        return "float64" if self.name == "float64" else "float32"

    def __eq__(self, other):
        return isinstance(other, Policy) and other.name == self.name

    def __hash__(self):
        return hash(self.name)

    def __repr__(self):
        return f'<Policy "{self.name}">'


_global = Policy("float32")


def set_global_policy(policy):
    """Set the policy of models created from now on: a name, a Policy, or None for 'float32'."""
    global _global
    _global = Policy("float32" if policy is None else policy)


def global_policy():
    """The policy new models take."""
    return _global


def path():
    """The bfloat16 kernels in use: 'avx512_bf16' (the CPU's vdpbf16ps) or 'emulated'."""
    return _core.bf16_path()
