"""Saving and loading: identical predictions, bit-identical continued training, atomic writes,
and clear errors (never a crash) for truncated, corrupted and foreign files."""

import os
import struct

import numpy as np
import pytest

import cnnbp
from cnnbp.layers import AveragePooling2D, Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D

from conftest import compiled_resnet


def make(optimizer="adam", channels_first=False):
    cnnbp.set_seed(7)
    fmt = "channels_first" if channels_first else None
    shape = (3, 10, 10) if channels_first else (10, 10, 3)
    m = cnnbp.Sequential([Input(shape), Conv2D(6, 3, padding=((1, 0), (0, 1)), activation="relu", data_format=fmt),
                          MaxPooling2D(data_format=fmt), Conv2D(4, 2, activation="tanh", data_format=fmt),
                          AveragePooling2D(padding="same", data_format=fmt), Flatten(), Dropout(0.25),
                          Dense(8, activation="leaky_relu"), Dense(3, activation="softmax")])
    m.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    return m


def data(n=32, seed=0, channels_first=False):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 10, 10, 3), dtype=np.float32)
    if channels_first:
        x = x.transpose(0, 3, 1, 2).copy()
    return x, np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]


@pytest.mark.parametrize("channels_first", [False, True])
def test_save_load_predict_identical(tmp_path, channels_first):
    m = make(channels_first=channels_first)
    x, y = data(channels_first=channels_first)
    m.fit(x, y, epochs=2, batch_size=8, verbose=0)
    p = tmp_path / "model.cnnbp"
    m.save(p)
    m2 = cnnbp.load_model(p)
    assert np.array_equal(m.predict(x), m2.predict(x))
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(p).st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600
    assert [l.name for l in m2.layers] == [l.name for l in m.layers]
    assert m2.count_params() == m.count_params()
    assert m2.evaluate(x, y, verbose=0) == m.evaluate(x, y, verbose=0)


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "adamw"])
def test_continue_training_after_load_is_bit_identical(tmp_path, optimizer):
    if optimizer == "sgd":
        optimizer = cnnbp.optimizers.SGD(0.05, momentum=0.9, nesterov=True)
    a = make(optimizer)
    x, y = data(64)
    for i in range(5):
        a.train_on_batch(x[i * 8:(i + 1) * 8], y[i * 8:(i + 1) * 8])
    p = tmp_path / "mid.cnnbp"
    a.save(p)
    b = cnnbp.load_model(p)
    assert b.network.iterations == 5
    for i in range(5, 8):
        a.train_on_batch(x[i * 8:(i + 1) * 8], y[i * 8:(i + 1) * 8])
        b.train_on_batch(x[i * 8:(i + 1) * 8], y[i * 8:(i + 1) * 8])
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        assert np.array_equal(wa, wb)


def test_save_weights_and_load_weights_into_a_new_build(tmp_path):
    a = make()
    p = tmp_path / "w.cnnbp"
    a.save_weights(p)
    b = make()
    for w in b.layers[0].weights:
        w[...] = 0
    b.load_weights(p)  # new automatic layer names: matched by order and shape
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        assert np.array_equal(wa, wb)
    with pytest.raises(ValueError, match="holds only weights"):
        cnnbp.load_model(p)
    other = cnnbp.Sequential([Input((10, 10, 3)), Flatten(), Dense(3)])
    with pytest.raises(ValueError, match="weight arrays"):
        other.load_weights(p)


def test_truncated_file_gives_a_clear_error(tmp_path):
    m = make()
    p = tmp_path / "m.cnnbp"
    m.save(p)
    raw = p.read_bytes()
    for cut in (0, 5, 20, len(raw) // 2, len(raw) - 1):
        q = tmp_path / f"cut{cut}.cnnbp"
        q.write_bytes(raw[:cut])
        with pytest.raises(ValueError, match="cnnbp model file|truncated|corrupt"):
            cnnbp.load_model(q)


def test_random_byte_edits_never_load_silently_or_crash(tmp_path):
    m = make()
    p = tmp_path / "m.cnnbp"
    m.save(p)
    raw = bytearray(p.read_bytes())
    rng = np.random.default_rng(0)
    q = tmp_path / "edit.cnnbp"
    cases = 300
    for _ in range(cases):
        edited = bytearray(raw)
        for pos in rng.integers(0, len(raw), rng.integers(1, 4)):
            edited[pos] = (edited[pos] + int(rng.integers(1, 256))) % 256
        q.write_bytes(bytes(edited))
        with pytest.raises(ValueError):
            cnnbp.load_model(q)


def test_foreign_and_missing_files(tmp_path):
    q = tmp_path / "image.png"
    q.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(ValueError, match="not a cnnbp model file"):
        cnnbp.load_model(q)
    with pytest.raises(FileNotFoundError):
        cnnbp.load_model(tmp_path / "missing.cnnbp")
    with pytest.raises(ValueError, match="directory"):
        cnnbp.load_model(tmp_path)


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    m = make()
    p = tmp_path / "m.cnnbp"
    m.save(p)
    good = p.read_bytes()
    m.fit(*data(), epochs=1, verbose=0)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        m.save(p)
    monkeypatch.undo()
    assert p.read_bytes() == good
    assert sorted(os.listdir(tmp_path)) == ["m.cnnbp"]  # no temporary file left behind
    assert cnnbp.load_model(p).count_params() == m.count_params()


def test_uncompiled_model_round_trip(tmp_path):
    cnnbp.set_seed(1)
    m = cnnbp.Sequential([Input((4,)), Dense(3, activation="relu", kernel_initializer="he_uniform"), Dense(2)],
                         dtype="float64")
    p = tmp_path / "u.cnnbp"
    m.save(p)
    m2 = cnnbp.load_model(p)
    assert m2.dtype == np.float64 and m2.loss is None
    x = np.random.default_rng(0).random((5, 4))
    assert np.array_equal(m.predict(x), m2.predict(x))


def _conv_pool_dense():
    cnnbp.set_seed(2)
    return cnnbp.Sequential([Input((9, 9, 2)), Conv2D(4, 3, activation="relu"), MaxPooling2D(), Flatten(),
                             Dense(5, activation="relu"), Dense(3)])


def test_torch_layout_round_trip_and_semantics():
    import reference as ref
    m = _conv_pool_dense()
    sd = cnnbp.io.to_torch_state_dict(m)
    conv, d1 = m.layers[0], m.layers[3]
    assert sd[f"{conv.name}.weight"].shape == (4, 2, 3, 3) and sd[f"{d1.name}.weight"].shape == (5, 36)
    # NCHW semantics, computed independently with numpy: conv with OIHW weights on NCHW input, then
    # PyTorch's flatten order (C, H, W) into the dense layer.
    x = np.random.default_rng(0).random((3, 9, 9, 2)).astype(np.float32)
    w_oihw = sd[f"{conv.name}.weight"]
    h = np.maximum(ref.conv2d(x, w_oihw.transpose(2, 3, 1, 0), sd[f"{conv.name}.bias"]), 0)
    h = ref.max_pool2d(h, (2, 2))[0]
    flat_nchw = h.transpose(0, 3, 1, 2).reshape(3, -1)
    h1 = np.maximum(flat_nchw @ sd[f"{d1.name}.weight"].T + sd[f"{d1.name}.bias"], 0)
    d2 = m.layers[4]
    y = h1 @ sd[f"{d2.name}.weight"].T + sd[f"{d2.name}.bias"]
    ref.assert_close(m.predict(x), y, 1e-5)
    # and back, into a freshly built model (new names: matched by order)
    m2 = _conv_pool_dense()
    cnnbp.io.from_torch_state_dict(m2, dict(zip([f"l{i}.{k.split('.')[-1]}" for i, k in enumerate(sd)], sd.values())))
    for a, b in zip(m.get_weights(), m2.get_weights()):
        assert np.array_equal(a, b)
    bad = dict(sd)
    bad[f"{conv.name}.weight"] = np.zeros((4, 2, 2, 2), np.float32)
    with pytest.raises(ValueError, match="expected the PyTorch layout"):
        cnnbp.io.from_torch_state_dict(m2, bad)


def test_torch_model_gives_the_same_outputs():
    torch = pytest.importorskip("torch")  # the numpy check above always runs
    m = _conv_pool_dense()
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                              torch.nn.Linear(36, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    sd = list(cnnbp.io.to_torch_state_dict(m).values())
    net.load_state_dict({k: torch.from_numpy(v) for k, v in zip(net.state_dict(), sd)})
    x = np.random.default_rng(1).random((4, 9, 9, 2)).astype(np.float32)
    with torch.no_grad():
        yt = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    assert np.allclose(m.predict(x), yt, atol=1e-5)


def test_fit_resumed_after_load_equals_uninterrupted_fit(tmp_path):
    x, y = data(96)
    a = make()
    a.fit(x, y, epochs=3, batch_size=16, verbose=0)
    b = make()
    b.fit(x, y, epochs=2, batch_size=16, verbose=0)
    b.save(tmp_path / "b.cnnbp")
    c = cnnbp.load_model(tmp_path / "b.cnnbp")
    c.fit(x, y, epochs=3, initial_epoch=2, batch_size=16, verbose=0)
    for wa, wc in zip(a.get_weights(), c.get_weights()):
        assert np.array_equal(wa, wc)


def test_killing_a_process_while_it_saves_never_leaves_a_broken_file(tmp_path):
    """SIGKILL a process that keeps re-saving a model at random moments: the file is always the
    previous good one or the new one, never a partial write."""
    import signal
    import subprocess
    import sys
    import textwrap
    import time
    target = tmp_path / "m.cnnbp"
    code = textwrap.dedent(f"""
        import numpy as np, cnnbp
        from cnnbp.layers import Input, Dense, Flatten
        m = cnnbp.Sequential([Input((64, 64, 3)), Flatten(), Dense(256), Dense(10)])   # ~12 MiB file
        m.compile(optimizer="adam", loss="mse")
        m.save({str(target)!r})
        print("saved", flush=True)
        i = 0
        while True:
            m.layers[-1].bias[:] = i
            m.save({str(target)!r})
            i += 1
    """)
    rng = np.random.default_rng(0)
    for unnamed in (True, False):   # O_TMPFILE temporaries, and the named ones of file systems without it
        prelude = "" if unnamed else "import os; del os.O_TMPFILE\n"
        leftovers = []
        for trial in range(15):
            with subprocess.Popen([sys.executable, "-c", prelude + code], stdout=subprocess.PIPE, text=True) as p:
                try:
                    assert p.stdout.readline().strip() == "saved"
                    time.sleep(float(rng.uniform(0.05, 0.4)))
                finally:
                    p.send_signal(signal.SIGKILL)
                    p.wait()
            m = cnnbp.load_model(target)  # loads: never a partial file
            b = m.layers[-1].bias
            assert np.all(b == b[0])  # one consistent save
            leftovers.append(len([n for n in os.listdir(tmp_path) if n.startswith(".cnnbp-save-")]))
        if unnamed:   # a killed save of an unnamed file leaves nothing (at most one in the link-rename instant)
            assert sum(leftovers) <= 1, leftovers
        else:         # each killed save left at most its own temporary: the next save removed the earlier ones
            assert max(leftovers) <= 1, leftovers
        m.save(target)   # a save in the folder removes the temporaries of processes that no longer exist
        assert sorted(os.listdir(tmp_path)) == ["m.cnnbp"]


def test_resnet_with_batch_norm_resumes_bit_for_bit(tmp_path):
    """Save -> load -> continue equals uninterrupted training, moving statistics included."""
    rng = np.random.default_rng(3)
    x = rng.random((48, 10, 10, 1), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 48)]

    def make():
        return compiled_resnet(8, (10, 10, 1), 3, seed=21)

    full = make()
    full.fit(x, y, batch_size=16, epochs=3, verbose=0)
    part = make()
    part.fit(x, y, batch_size=16, epochs=1, verbose=0)
    part.save(tmp_path / "r.cnnbp")
    resumed = cnnbp.load_model(tmp_path / "r.cnnbp")
    assert resumed.count_params() == full.count_params()
    resumed.fit(x, y, batch_size=16, epochs=3, initial_epoch=1, verbose=0)
    for a, b in zip(full.get_weights(), resumed.get_weights()):
        assert np.array_equal(a, b)
    stats = [w for l in full.layers if isinstance(l, cnnbp.layers.BatchNormalization) for w in l.get_weights()[2:]]
    assert stats and not np.all(stats[0] == 0)


def test_graph_json_round_trip_keeps_connections():
    m = cnnbp.applications.resnet(8, (8, 8, 3), 4)
    text = cnnbp.io.model_to_json(m)
    m2 = cnnbp.io.model_from_json(text)
    assert [type(l).__name__ for l in m2.layers] == [type(l).__name__ for l in m.layers]
    assert [m2._inbound[l.name] for l in m2.layers] == [m._inbound[l.name] for l in m.layers]
    assert m2.count_params() == m.count_params()


def test_format_version_1_files_still_load(tmp_path, monkeypatch):
    """A file of the first format (version 1: a Sequential, weights only by layer) loads."""
    m = make()
    monkeypatch.setattr(cnnbp.io, "FORMAT_VERSION", 1)
    m.save(tmp_path / "v1.cnnbp")
    monkeypatch.undo()
    with open(tmp_path / "v1.cnnbp", "rb") as f:
        assert struct.unpack_from("<I", f.read(12), 8)[0] == 1
    m2 = cnnbp.load_model(tmp_path / "v1.cnnbp")
    for a, b in zip(m.get_weights(), m2.get_weights()):
        assert np.array_equal(a, b)


def test_torch_state_dict_covers_batch_norm():
    """BatchNormalization maps to BatchNorm2d's weight, bias, running_mean, running_var; the
    round trip (by name, and by order with PyTorch's num_batches_tracked entries) is exact."""
    def make_bn():
        x = Input((4, 4, 2))
        h = cnnbp.layers.BatchNormalization(name="bn2d")(Conv2D(3, 3, name="conv")(x))
        h = cnnbp.layers.BatchNormalization(name="bn1d")(Flatten(name="flat")(h))
        return cnnbp.Model(x, Dense(2, name="fc")(h))

    cnnbp.set_seed(1)
    a = make_bn()
    rng = np.random.default_rng(0)
    a.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in a.get_weights()])
    sd = cnnbp.io.to_torch_state_dict(a)
    assert list(sd) == ["conv.weight", "conv.bias", "bn2d.weight", "bn2d.bias", "bn2d.running_mean",
                        "bn2d.running_var", "bn1d.weight", "bn1d.bias", "bn1d.running_mean", "bn1d.running_var",
                        "fc.weight", "fc.bias"]
    # bn1d's features follow PyTorch's (C, H, W) flatten order, as fc's input columns do
    order = np.arange(12).reshape(2, 2, 3).transpose(2, 0, 1).reshape(-1)
    assert np.array_equal(sd["bn1d.running_mean"], np.array(a.get_layer("bn1d").moving_mean)[order])
    b = make_bn()
    cnnbp.io.from_torch_state_dict(b, sd)
    for u, v in zip(a.get_weights(), b.get_weights()):
        assert np.array_equal(u, v)
    c = make_bn()
    by_order = {}
    for k, v in sd.items():
        by_order[k.replace("bn2d", "layer1").replace("bn1d", "layer2")] = v
        if k.endswith("running_var"):
            by_order[k.rsplit(".", 1)[0].replace("bn2d", "layer1").replace("bn1d", "layer2") + ".num_batches_tracked"] = 0
    cnnbp.io.from_torch_state_dict(c, by_order)
    for u, v in zip(a.get_weights(), c.get_weights()):
        assert np.array_equal(u, v)


def test_sgd_weight_decay_of_an_earlier_file_stays_coupled(tmp_path):
    """Files written before SGD's weight_decay became decoupled (no coupled_weight_decay key) load
    with their value as coupled_weight_decay, so their training resumes as before."""
    import json
    import zlib
    from cnnbp import io as cio
    cnnbp.set_seed(0)
    m = cnnbp.Sequential([cnnbp.Input((3,)), cnnbp.layers.Dense(2)])
    m.compile(optimizer=cnnbp.optimizers.SGD(0.1, momentum=0.9, coupled_weight_decay=0.01), loss="mse")
    path = tmp_path / "old.cnnbp"
    m.save(path)
    data = path.read_bytes()
    _, version, hlen, _ = cio._PRELUDE.unpack_from(data)
    header = json.loads(data[cio._PRELUDE.size:cio._PRELUDE.size + hlen])
    opt = header["training"]["optimizer"]
    opt["weight_decay"] = opt.pop("coupled_weight_decay")        # the earlier layout
    hb = json.dumps(header, sort_keys=True).encode()
    path.write_bytes(cio._PRELUDE.pack(cio.MAGIC, version, len(hb), zlib.crc32(hb)) + hb
                     + data[cio._PRELUDE.size + hlen:])
    back = cnnbp.load_model(path)
    assert back.optimizer.coupled_weight_decay == 0.01 and back.optimizer.weight_decay == 0.0
