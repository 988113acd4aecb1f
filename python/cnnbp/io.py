"""Saving and loading models: one file with the architecture (JSON), the weights, the optimizer
state and a format version.

File layout (little-endian): 8-byte magic ``CNNBP\\0\\x01\\n``, u32 format version, u64 header
length, u32 CRC-32 of the header, the header (UTF-8 JSON), then the tensor data (raw arrays,
offsets in the header, CRC-32 of all of it in the header). Loading parses only JSON and raw numeric
arrays — nothing in the file is ever executed — and validates every size against the file before
allocating. Saving writes a temporary file in the same folder, flushes it to disk and renames it
over the target, so a crash while saving never destroys the previous file."""

import json
import os
import struct
import zlib

import numpy as np

__all__ = ["save_model", "load_model", "save_weights", "load_weights", "to_torch_state_dict", "from_torch_state_dict",
           "model_to_json", "model_from_json",
           "FORMAT_VERSION"]

MAGIC = b"CNNBP\x00\x01\n"
FORMAT_VERSION = 2          # 2: graphs (each layer lists the layers it reads) and non-trainable state
_READABLE_VERSIONS = (1, 2)
_PRELUDE = struct.Struct("<8sIQI")
_MAX_HEADER = 64 << 20
_DTYPES = {"float32": np.float32, "float64": np.float64}


class _Corrupt(ValueError):
    pass


# ---- writing ----------------------------------------------------------------------------------
def _file_mode(path):
    """The mode a new file would get (0666 less the umask), or the existing file's mode."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


_TMP_PREFIX = ".cnnbp-save-"


def _temporary_name(folder):
    """A name for a temporary in folder that says which process made it (see _remove_orphans)."""
    import secrets
    return os.path.join(folder, f"{_TMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}")


def _open_temporary(folder):
    """(fd, name): an unnamed file in folder (O_TMPFILE, name None) where the system and the file
    system allow one, else a named temporary (name with this process's id)."""
    flag = getattr(os, "O_TMPFILE", 0)
    if flag and os.path.isdir("/proc/self/fd"):
        try:
            return os.open(folder, flag | os.O_WRONLY, 0o600), None
        except OSError:
            pass   # a file system without O_TMPFILE (or an old kernel): named temporaries
    while True:
        name = _temporary_name(folder)
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), name
        except FileExistsError:
            continue


def _link_unnamed(fd, name):
    """Give the O_TMPFILE file fd a name: linkat(/proc/self/fd/N, AT_SYMLINK_FOLLOW). (os.link
    with default directory fds calls link(), which does not follow the /proc link: pass one.)"""
    proc = os.open("/proc/self/fd", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.link(str(fd), name, src_dir_fd=proc, follow_symlinks=True)
    finally:
        os.close(proc)


def _remove_orphans(folder):
    """Remove temporaries of saves whose process no longer exists (a save killed mid-write)."""
    try:
        names = [n for n in os.listdir(folder) if n.startswith(_TMP_PREFIX)]
    except OSError:
        return
    for n in names:
        pid = n[len(_TMP_PREFIX):].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue            # alive (or not ours to signal): leave it
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError):
            continue
        try:
            os.unlink(os.path.join(folder, n))
        except OSError:
            pass


def _write_atomic(path, header, arrays):
    path = os.fspath(path)
    blob_parts, tensors, offset = [], [], 0
    for name, a in arrays:
        a = np.ascontiguousarray(a)
        if a.dtype.name not in _DTYPES:
            raise TypeError(f"save: tensor {name!r} has unsupported dtype {a.dtype}")
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        tensors.append({"name": name, "dtype": a.dtype.name, "shape": list(a.shape), "offset": offset,
                        "nbytes": len(data)})
        blob_parts.append(data)
        offset += len(data)
    blob = b"".join(blob_parts)
    header = dict(header, tensors=tensors, blob_nbytes=len(blob), blob_crc32=zlib.crc32(blob))
    hbytes = json.dumps(header, sort_keys=True).encode("utf-8")
    prelude = _PRELUDE.pack(MAGIC, FORMAT_VERSION, len(hbytes), zlib.crc32(hbytes))
    folder = os.path.dirname(os.path.abspath(path)) or "."
    _remove_orphans(folder)
    fd, tmp = _open_temporary(folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(prelude)
            f.write(hbytes)
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), _file_mode(path))  # temporaries are 0600; give the file the usual permissions
            if tmp is None:
                # An unnamed file until now: a process killed before this line leaves nothing behind.
                # It gets a name only for the instant between the link and the rename.
                tmp = _temporary_name(folder)
                _link_unnamed(f.fileno(), tmp)
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


# ---- reading ----------------------------------------------------------------------------------
def _read(path):
    """(header, {name: array}) from a cnnbp file, or a ValueError saying what is wrong."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"load: no such file: {path}") from None
    except IsADirectoryError:
        raise ValueError(f"load: {path} is a directory, not a cnnbp model file") from None
    where = f"load: {path}"
    if len(data) < _PRELUDE.size or data[:8] != MAGIC:
        raise _Corrupt(f"{where} is not a cnnbp model file (bad magic bytes)")
    _, version, hlen, hcrc = _PRELUDE.unpack_from(data)
    if version not in _READABLE_VERSIONS:
        raise _Corrupt(f"{where} has format version {version}; this cnnbp reads versions "
                       f"{', '.join(map(str, _READABLE_VERSIONS))}")
    if hlen > _MAX_HEADER or _PRELUDE.size + hlen > len(data):
        raise _Corrupt(f"{where} is truncated or corrupt (header of {hlen} bytes in a {len(data)}-byte file)")
    hbytes = data[_PRELUDE.size:_PRELUDE.size + hlen]
    if zlib.crc32(hbytes) != hcrc:
        raise _Corrupt(f"{where} is corrupt (header checksum mismatch)")
    try:
        header = json.loads(hbytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _Corrupt(f"{where} is corrupt (header is not valid JSON: {e})") from None
    if not isinstance(header, dict):
        raise _Corrupt(f"{where} is corrupt (header is not an object)")
    blob = memoryview(data)[_PRELUDE.size + hlen:]
    if header.get("blob_nbytes") != len(blob):
        raise _Corrupt(f"{where} is truncated or corrupt (data holds {len(blob)} bytes, header says "
                       f"{header.get('blob_nbytes')})")
    if zlib.crc32(blob) != header.get("blob_crc32"):
        raise _Corrupt(f"{where} is corrupt (data checksum mismatch)")
    arrays = {}
    for t in header.get("tensors", []):
        try:
            dt = np.dtype(_DTYPES[t["dtype"]]).newbyteorder("<")
            shape = tuple(int(d) for d in t["shape"])
            off, nb = int(t["offset"]), int(t["nbytes"])
            if any(d < 0 for d in shape) or nb != int(np.prod(shape, dtype=np.int64)) * dt.itemsize:
                raise ValueError("size does not match shape")
            if off < 0 or off + nb > len(blob):
                raise ValueError("outside the data")
            arrays[t["name"]] = np.frombuffer(blob, dtype=dt, count=nb // dt.itemsize, offset=off).reshape(
                shape).astype(dt.newbyteorder("="))
        except (KeyError, TypeError, ValueError) as e:
            raise _Corrupt(f"{where} is corrupt (bad tensor entry {t!r}: {e})") from None
    return header, arrays


# ---- models -----------------------------------------------------------------------------------
def _model_config(model):
    from .models import Sequential
    model._ensure_built()
    # A Sequential holding a branching model (used as a layer) is saved as the graph it is.
    prev, chain = model._input_name, True
    for l in model._layers:
        chain = chain and model._inbound[l.name] == [prev]
        prev = l.name
    seq = isinstance(model, Sequential) and chain
    cfg = {
        "class_name": "Sequential" if seq else "Functional",
        "name": model.name,
        "dtype": model.dtype_policy.name,
        "input_shape": list(model._input_shape),
        "layers": [{"class_name": type(l).__name__, "config": l.get_config()} for l in model._layers],
    }
    if not seq:
        cfg["input_name"] = model._input_name
        for entry, l in zip(cfg["layers"], model._layers):
            entry["inbound"] = list(model._inbound[l.name])
        cfg["output"] = model._layers[-1].name
    return cfg


def _weight_arrays(model):
    return [(f"{l.name}/{pname}", v) for l in model._layers for pname, v in l._weight_views()]


def save_model(model, path, include_optimizer=True):
    """Write architecture, weights and (if compiled) loss, optimizer and its state to one file."""
    from . import __version__, metrics
    header = {"format_version": FORMAT_VERSION, "cnnbp_version": __version__, "kind": "model",
              "model": _model_config(model), "training": None}
    arrays = _weight_arrays(model)
    if include_optimizer and model._loss is not None:
        net = model._net
        opt = model._optimizer
        header["training"] = {
            "loss": dict(model._loss.get_config(), class_name=type(model._loss).__name__),
            "optimizer": dict(opt.get_config(), class_name=type(opt).__name__),
            "metrics": [metrics._serialize(m) for m in model._metrics], "loss_epsilon": model._loss_epsilon, "fuse_loss": model._fuse,
            "iterations": int(net.iterations), "shuffle_seed": int(model._shuffle_seed),
        }
        arrays += [(f"optimizer/state{i}", v) for i, v in enumerate(net.optimizer_state())]
    _write_atomic(path, header, arrays)


def _layer_from_config(entry, where):
    from . import layers as L
    allowed = {c: getattr(L, c) for c in L.__all__
               if isinstance(getattr(L, c), type) and c not in ("Layer", "InputLayer")}
    try:
        cls = allowed[entry["class_name"]]
        cfg = dict(entry["config"])
    except (KeyError, TypeError):
        raise _Corrupt(f"{where}: unknown or malformed layer entry {entry!r}") from None
    if cls is L.Conv2D and isinstance(cfg.get("padding"), list):
        cfg["padding"] = tuple(tuple(p) for p in cfg["padding"])
    try:
        return cls(**cfg)
    except (TypeError, ValueError) as e:
        raise _Corrupt(f"{where}: cannot rebuild layer {entry.get('class_name')}: {e}") from None


def _build(header, where):
    m = header.get("model")
    if not isinstance(m, dict) or m.get("class_name") not in ("Sequential", "Functional"):
        raise _Corrupt(f"{where}: no model architecture in the file")
    try:
        model = _build_sequential(m, where) if m["class_name"] == "Sequential" else _build_functional(m, where)
        model._ensure_built()
    except _Corrupt:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise _Corrupt(f"{where}: cannot rebuild the model: {e}") from None
    return model


def _build_sequential(m, where):
    from .layers import Input
    from .models import Sequential
    model = Sequential(name=m["name"], dtype=m["dtype"])
    model.add(Input(tuple(m["input_shape"])))
    for entry in m["layers"]:
        model.add(_layer_from_config(entry, where))
    return model


def _build_functional(m, where):
    """Layers in an order where each comes after what it reads (the file's order need not be
    one); a cycle, a name read but never defined, or a layer the output does not use is an error."""
    from .layers import Input
    from .models import Model
    entries = m["layers"]
    if not isinstance(entries, list) or not entries:
        raise _Corrupt(f"{where}: a Functional model needs a non-empty list of layers")
    input_name = str(m.get("input_name", "input"))
    by_name = {}
    for e in entries:
        name = e["config"]["name"] if isinstance(e, dict) and isinstance(e.get("config"), dict) else None
        if not isinstance(name, str) or name in by_name or name == input_name:
            raise _Corrupt(f"{where}: every layer needs a unique name, got {name!r}")
        inbound = e.get("inbound")
        if not isinstance(inbound, list) or not inbound or not all(isinstance(n, str) for n in inbound):
            raise _Corrupt(f"{where}: layer {name!r} needs 'inbound', the list of layer names it reads")
        by_name[name] = e
    for name, e in by_name.items():
        for n in e["inbound"]:
            if n != input_name and n not in by_name:
                raise _Corrupt(f"{where}: layer {name!r} reads {n!r}, which is neither a layer nor the input "
                               f"{input_name!r}")
    order, state = [], {}

    def visit(name):  # depth-first, iterative over the inbound lists
        stack = [(name, iter(by_name[name]["inbound"]))]
        state[name] = "open"
        while stack:
            cur, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                state[cur] = "done"
                order.append(cur)
            elif nxt != input_name:
                if state.get(nxt) == "open":
                    cycle = [c for c, _ in stack][[c for c, _ in stack].index(nxt):] + [nxt]
                    raise _Corrupt(f"{where}: the layers form a cycle: {' -> '.join(reversed(cycle))}")
                if nxt not in state:
                    state[nxt] = "open"
                    stack.append((nxt, iter(by_name[nxt]["inbound"])))

    output = m.get("output", entries[-1]["config"]["name"])
    if output not in by_name:
        raise _Corrupt(f"{where}: the output {output!r} is not a layer of the model")
    for e in entries:
        if e["config"]["name"] not in state:
            visit(e["config"]["name"])
    inp = Input(tuple(m["input_shape"]), name=input_name)
    tensors = {input_name: inp}
    for name in order:
        e = by_name[name]
        layer = _layer_from_config(e, where)
        ins = [tensors[n] for n in e["inbound"]]
        tensors[name] = layer(ins if layer._max_inputs > 1 else ins[0])
    model = Model(inp, tensors[output], name=m.get("name", "functional"), dtype=m.get("dtype", "float32"))
    used = {l.name for l in model._layers}
    unused = [n for n in by_name if n not in used]
    if unused:
        raise _Corrupt(f"{where}: layer {unused[0]!r} is not used by the model's output ({output!r})")
    return model


def _set_weights(model, arrays, where):
    """By layer name; when the names differ (a model built again gets new automatic names), by
    order, as long as count and shapes agree. Everything is checked before anything is written."""
    expected = _weight_arrays(model)
    if all(n in arrays for n, _ in expected):
        pairs = [(n, arrays[n], dst) for n, dst in expected]
    else:
        stored = [(n, a) for n, a in arrays.items() if not n.startswith("optimizer/")]
        if len(stored) != len(expected):
            raise ValueError(f"{where}: the file holds {len(stored)} weight arrays, the model has {len(expected)}")
        pairs = [(n, a, dst) for (n, a), (_, dst) in zip(stored, expected)]
    for name, src, dst in pairs:
        if src.shape != dst.shape:
            raise ValueError(f"{where}: {name} has shape {src.shape} in the file, the model expects {dst.shape}")
    for _, src, dst in pairs:
        dst[...] = src


def load_model(path, compile=True):
    """Rebuild a model saved with ``model.save(path)``: predictions are identical, and training
    continues exactly where it stopped (optimizer state and step count included)."""
    from . import losses, optimizers
    where = f"load: {os.fspath(path)}"
    header, arrays = _read(path)
    if header.get("kind") != "model":
        raise ValueError(f"{where} holds only weights; build the model and call model.load_weights(path)")
    model = _build(header, where)
    _set_weights(model, arrays, where)
    tr = header.get("training")
    if compile and tr:
        try:
            lcfg = dict(tr["loss"])
            loss_cls = losses._BY_CLASS_NAME[lcfg.pop("class_name")]
            lcfg.pop("name", None)
            loss = loss_cls(**lcfg)
            ocfg = dict(tr["optimizer"])
            opt_cls = optimizers._BY_CLASS_NAME[ocfg.pop("class_name")]
            ocfg.pop("name", None)
            if opt_cls is optimizers.SGD and "coupled_weight_decay" not in ocfg:
                # files from before the decoupled SGD weight_decay: theirs was the coupled form
                ocfg["coupled_weight_decay"] = ocfg.pop("weight_decay", 0.0)
            opt = opt_cls(**ocfg)
            model.compile(optimizer=opt, loss=loss, metrics=tr["metrics"], loss_epsilon=tr["loss_epsilon"],
                          fuse_loss=tr["fuse_loss"])
            state = model._net.optimizer_state()
            for i, dst in enumerate(state):
                src = arrays.get(f"optimizer/state{i}")
                if src is None or src.shape != dst.shape:
                    raise ValueError(f"optimizer state {i} missing or of the wrong size")
                dst[...] = src
            model._net.iterations = int(tr["iterations"])
            model._shuffle_seed = int(tr.get("shuffle_seed", model._shuffle_seed))
        except (KeyError, TypeError, ValueError) as e:
            raise _Corrupt(f"{where}: cannot restore the training configuration: {e}") from None
    return model


def save_weights(model, path):
    """Write only the weights (load them into the same architecture with load_weights)."""
    from . import __version__
    _write_atomic(path, {"format_version": FORMAT_VERSION, "cnnbp_version": __version__, "kind": "weights",
                         "model": _model_config(model)}, _weight_arrays(model))


def load_weights(model, path):
    """Load weights saved by save_weights or save into this model (names and shapes must match)."""
    where = f"load_weights: {os.fspath(path)}"
    _, arrays = _read(path)
    model._ensure_built()
    _set_weights(model, arrays, where)


# ---- PyTorch layouts --------------------------------------------------------------------------
def _torch_plan(model):
    """(layer, kind, flatten_shape) for each layer with weights, in the model's order; flatten_shape
    is the (H, W, C) that a Dense (or BatchNormalization) layer's input features were flattened
    from (their order differs in PyTorch), followed back through layers that keep the features'
    order (activations, dropout, batch normalisation)."""
    from .layers import BatchNormalization, Conv2D, Dense, Flatten
    from .layers.core import Activation, Dropout, Identity, LeakyReLU, ReLU, Softmax
    model._ensure_built()
    plan, flat_of = [], {}
    keeps = (Activation, Dropout, Identity, LeakyReLU, ReLU, Softmax, BatchNormalization)
    for layer in model._layers:
        inbound = model._inbound[layer.name]
        src = flat_of.get(inbound[0]) if len(inbound) == 1 else None
        if isinstance(layer, Flatten):
            shape = tuple(layer.input_shape[1:])
            flat_of[layer.name] = shape if len(shape) == 3 else None
        elif isinstance(layer, keeps) and src is not None:
            flat_of[layer.name] = src
        if isinstance(layer, Conv2D):
            plan.append((layer, "conv", None))
        elif isinstance(layer, Dense):
            plan.append((layer, "dense", src))
        elif isinstance(layer, BatchNormalization):
            plan.append((layer, "bn", src))
        elif layer._params or layer._state:
            raise ValueError(f"{layer.name}: no PyTorch layout for {type(layer).__name__}")
    return plan


def _chw_order(shape):
    h, w, c = shape
    return np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)


_BN_KEYS = (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"), ("moving_variance", "running_var"))


def to_torch_state_dict(model):
    """The weights as a dict of numpy arrays in PyTorch's layouts: ``<layer>.weight`` is OIHW for
    convolutions and (out, in) for dense layers, whose input features follow PyTorch's NCHW
    flatten order; ``<layer>.bias`` as is; BatchNormalization gives ``weight`` (gamma), ``bias``
    (beta), ``running_mean`` and ``running_var`` (PyTorch's BatchNorm2d). Note that PyTorch
    averages the unbiased batch variance into running_var, Keras and cnnbp the biased one: the two
    differ by the factor m/(m-1) for m values per channel in a batch, so a model moved between them
    keeps its weights exactly and its running variance up to that factor's effect.
    ``torch.from_numpy`` turns each into a tensor."""
    out = {}
    for layer, kind, flat in _torch_plan(model):
        if kind == "bn":
            order = _chw_order(flat) if flat else None
            for ours, theirs in _BN_KEYS:
                if ours in layer._params or ours in layer._state:
                    v = np.array(layer._view(ours))
                    out[f"{layer.name}.{theirs}"] = v[order] if order is not None else v
            continue
        k = np.array(layer.kernel)
        if kind == "conv":
            w = k.transpose(3, 2, 0, 1)
        else:
            w = (k[_chw_order(flat)] if flat else k).T
        out[f"{layer.name}.weight"] = np.ascontiguousarray(w)
        if "bias" in layer._params:
            out[f"{layer.name}.bias"] = np.array(layer.bias)
    return out


def _torch_keys(layer, kind):
    """The state_dict keys (suffixes) a layer has, in PyTorch's order."""
    if kind == "bn":
        return [theirs for ours, theirs in _BN_KEYS if ours in layer._params or ours in layer._state]
    return ["weight"] + (["bias"] if "bias" in layer._params else [])


def from_torch_state_dict(model, state):
    """Load weights given in PyTorch's layouts (see to_torch_state_dict). Keys are matched by
    layer name, else by order (``num_batches_tracked`` entries are skipped); every shape is
    checked before anything is written."""
    plan = _torch_plan(model)
    state = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v) for k, v in dict(state).items()
             if not k.endswith("num_batches_tracked")}
    wanted = [[f"{l.name}.{s}" for s in _torch_keys(l, kind)] for l, kind, _ in plan]
    keys = list(state)
    if all(k in state for ks in wanted for k in ks):  # by layer name
        pairs = wanted
    else:  # by order, as a PyTorch state_dict lists them
        pairs, i = [], 0
        for (layer, kind, _), ks in zip(plan, wanted):
            got = keys[i:i + len(ks)]
            if len(got) != len(ks) or any(not g.endswith(k.rsplit(".", 1)[1]) for g, k in zip(got, ks)):
                raise ValueError(f"from_torch_state_dict: the state does not list {', '.join(k.rsplit('.', 1)[1] for k in ks)} "
                                 f"for {layer.name} at position {i}; keys: {keys[:8]}")
            pairs.append(got)
            i += len(ks)
        if i != len(keys):
            raise ValueError(f"from_torch_state_dict: {len(keys) - i} entries of the state are left over")
    pending = []
    for (layer, kind, flat), ks in zip(plan, pairs):
        if kind == "bn":
            order = _chw_order(flat) if flat else None
            names = [ours for ours, _ in _BN_KEYS if ours in layer._params or ours in layer._state]
            for ours, key in zip(names, ks):
                dst = layer._view(ours)
                src = state[key]
                if src.shape != dst.shape:
                    raise ValueError(f"{layer.name}: {key} has shape {src.shape}, expected {dst.shape}")
                if order is not None:
                    tmp = np.empty_like(src)
                    tmp[order] = src
                    src = tmp
                pending.append((dst, src))
            continue
        wk = ks[0]
        bk = ks[1] if len(ks) > 1 else None
        w = state[wk]
        kshape = tuple(layer.kernel.shape)
        ours = None
        if kind == "conv" and w.ndim == 4:
            ours = w.transpose(2, 3, 1, 0)
        elif kind == "dense" and w.ndim == 2:
            ours = w.T.copy()
            if flat:
                tmp = np.empty_like(ours)
                tmp[_chw_order(flat)] = ours
                ours = tmp
        if ours is None or ours.shape != kshape:
            raise ValueError(f"{layer.name}: {wk} has shape {w.shape}, expected the PyTorch layout of {kshape}")
        pending.append((layer.kernel, ours))
        if bk is not None:
            if state[bk].shape != tuple(layer.bias.shape):
                raise ValueError(f"{layer.name}: missing or misshapen {bk}")
            pending.append((layer.bias, state[bk]))
    for dst, src in pending:
        dst[...] = src


def model_to_json(model):
    """The architecture as JSON (no weights): ``{"class_name": "Sequential", "input_shape": [...],
    "layers": [{"class_name": "Conv2D", "config": {...}}, ...]}``; a graph is ``"Functional"``,
    with ``"input_name"``, ``"output"`` and, per layer, ``"inbound"``: the names of the layers (or
    the input) it reads, in order."""
    return json.dumps(_model_config(model), indent=1)


def model_from_json(text):
    """Build a model (fresh weights) from model_to_json's output or a hand-written equivalent;
    ``name`` and ``dtype`` may be omitted."""
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"model_from_json: not valid JSON: {e}") from None
    if not isinstance(cfg, dict) or "layers" not in cfg or "input_shape" not in cfg:
        raise ValueError("model_from_json: expected an object with 'input_shape' and 'layers'")
    default_name = "functional" if cfg.get("class_name") == "Functional" else "sequential"
    cfg = dict({"class_name": "Sequential", "name": default_name, "dtype": "float32"}, **cfg)
    return _build({"model": cfg}, "model_from_json")


def export_onnx(model, path, opset=17):
    """Write the model's inference graph as an ONNX file (needs the optional ``onnx`` package:
    ``pip install "cnnbp[onnx]"``). The graph's input ``input`` and output ``output`` keep cnnbp's
    layout (channels last: NHWC images) with a dynamic batch axis ``batch``; layers active only in
    training become Identity and BatchNormalization its inference affine map. The file is checked
    with ``onnx.checker.check_model(full_check=True)`` before it is written. opset: 17 to 21.
    Returns path."""
    from . import _onnx
    return _onnx.export(model, path, opset=opset)
