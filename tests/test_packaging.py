"""What the source distribution holds: the tracked files under the allowlisted paths, the LICENSE,
and nothing lying untracked in the tree (pyproject.toml's sdist.exclude)."""
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tracked():
    if shutil.which("git") is None or not os.path.isdir(os.path.join(ROOT, ".git")):
        pytest.skip("needs a git checkout")
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [p for p in out.splitlines() if os.path.exists(os.path.join(ROOT, p))]


def test_sdist_holds_the_tracked_files_and_no_untracked_one(tmp_path):
    if not hasattr(pytest.importorskip("build"), "ProjectBuilder"):  # a build/ folder, not the package
        pytest.skip("the 'build' package is not installed")
    pytest.importorskip("scikit_build_core")
    tracked = _tracked()
    src = tmp_path / "src"
    for p in tracked:
        (src / p).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.join(ROOT, p), src / p)
    (src / "stray-data.npy").write_bytes(b"\0" * 64)  # untracked files beside the project
    (src / "slow-unit-0123").write_bytes(b"x")
    r = subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", str(tmp_path / "dist"),
                        str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (sdist,) = list((tmp_path / "dist").iterdir())
    with tarfile.open(sdist) as t:
        members = {m.name.split("/", 1)[1] for m in t.getmembers() if m.isfile()}
    expected = {p for p in tracked if not p.startswith(".")}  # .ci/ and .gitignore stay out
    assert members - {"PKG-INFO"} == expected
    assert "LICENSE" in members and "stray-data.npy" not in members
    with tarfile.open(sdist) as t:
        info = t.extractfile(next(m for m in t.getmembers() if m.name.endswith("/PKG-INFO"))).read().decode()
    assert "License :: OSI Approved :: MIT License" in info and "Programming Language :: Python :: 3.13" in info


def test_version_is_defined_once():
    """pyproject.toml holds the version; CMake reads it from there into the extension, so
    cnnbp.__version__ equals the installed package's metadata."""
    import importlib.metadata
    import re

    import cnnbp
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        declared = re.search(r'^version = "([0-9.]+)"$', f.read(), re.M).group(1)
    assert cnnbp.__version__ == declared
    try:
        assert importlib.metadata.version("cnnbp") == declared
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("cnnbp is not installed as a distribution here")
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        assert not re.search(r"project\(cnnbp VERSION [0-9]", f.read())  # no second copy


def test_core_stub_matches_the_built_module():
    """python/cnnbp/_core.pyi (what editors and type checkers read) names every function, class
    and method of the built extension with the argument names its bindings declare."""
    import ast
    import inspect
    import os
    import re
    import cnnbp
    from cnnbp import _core
    path = os.path.join(os.path.dirname(cnnbp.__file__), "_core.pyi")
    if not os.path.exists(path):  # an installed wheel may carry it elsewhere
        path = os.path.join(os.path.dirname(__file__), "..", "python", "cnnbp", "_core.pyi")
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())

    def runtime_args(obj, name):
        # pybind11 puts the signature(s) on the docstring's first line(s): name(arg: type, ...) -> ...
        sigs = re.findall(rf"^(?:\d+\. )?{re.escape(name)}\((.*)\) ->", obj.__doc__ or "", re.M)
        return [[a.split(":")[0].strip().lstrip("*") for a in re.split(r",\s*(?![^\[]*\])", s) if a.strip()]
                for s in sigs]

    checked = 0
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            assert hasattr(_core, node.name), node.name
            want = [a.arg for a in node.args.args]
            assert want in runtime_args(getattr(_core, node.name), node.name), node.name
            checked += 1
        elif isinstance(node, ast.ClassDef) and hasattr(_core, node.name):
            cls = getattr(_core, node.name)
            for f in node.body:
                if not isinstance(f, ast.FunctionDef) or f.name.startswith("__"):
                    continue
                member = inspect.getattr_static(cls, f.name, None)
                assert member is not None, f"{node.name}.{f.name} is in the stub, not in the module"
                if isinstance(member, property):
                    continue
                fn = getattr(cls, f.name)
                want = [a.arg for a in f.args.args]
                got = runtime_args(fn, f.name)
                assert want in got, f"{node.name}.{f.name}: stub {want}, module {got}"
                checked += 1
    assert checked > 50
