"""Regenerate the Keras fixtures of tests/test_hdf5_reader.py with the real Keras 3 (torch backend).

Keras is no dependency of dynlab: run this from a throwaway environment, e.g.

    python3 -m venv /tmp/kerasvenv
    /tmp/kerasvenv/bin/pip install keras==3.15.1 torch==2.13.0 numpy h5py
    /tmp/kerasvenv/bin/python tests/data/keras/make_fixtures.py

Writes, next to this script, a small trained model saved with ``save_weights`` (Keras 3
``.weights.h5``), ``save`` (``.keras`` archive) and the legacy ``save`` to ``.h5``; a nested model
with a bfloat16 layer saved with ``save_weights``; and
``expected.json``: per file, the tensors a reader must yield (dynlab's dotted name, shape, source
dtype, sha256 of the float32/native little-endian values) taken from Keras' own ``model.weights``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
import zipfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import h5py
import keras
import numpy as np

HERE = Path(__file__).resolve().parent


def sequential() -> keras.Model:
    """Dense, BatchNormalization (non-trainable moving stats), Dense: compiled, so the weights
    files also hold optimizer state, which readers skip."""
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense"),
                             keras.layers.BatchNormalization(name="batch_normalization"),
                             keras.layers.Dense(2, name="dense_1")], name="sequential")


def nested() -> keras.Model:
    """A bfloat16 layer and a Functional model inside a Sequential one."""
    inp = keras.Input((3,))
    hidden = keras.layers.Dense(3, name="inner_a")(inp)
    encoder = keras.Model(inp, keras.layers.Dense(3, name="inner_b")(hidden), name="encoder")
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="stem", dtype="bfloat16"),
                             encoder, keras.layers.Dense(2, name="head")], name="nested")


def train(model: keras.Model) -> keras.Model:
    """Two epochs of Adam: moving statistics and optimizer state that readers must skip."""
    rng = np.random.default_rng(0)
    model.compile(optimizer="adam", loss="mse")
    model.fit(rng.standard_normal((8, 4)), rng.standard_normal((8, 2)), epochs=2, batch_size=4,
              verbose=0)
    return model


def randomise(model: keras.Model) -> keras.Model:
    """Uncompiled (no optimizer state: smaller files) but with non-trivial values everywhere."""
    rng = np.random.default_rng(1)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in model.weights])
    return model


def keras3_names(model: keras.Model, prefix: str = "") -> list[tuple[str, keras.Variable]]:
    """dynlab's names of a model's variables as Keras 3 saves them: ``layers/<key>/vars/<i>``,
    where ``<key>`` is the snake-cased class name, numbered from its second use in a container
    (``dense``, ``dense_1``; keras/src/saving/saving_lib.py, ``_save_container_state``)."""
    out = []
    used: dict[str, int] = {}
    for layer in model.layers:
        key = snake_case(type(layer).__name__)
        used[key] = used.get(key, -1) + 1
        key = f"{key}_{used[key]}" if used[key] else key
        if isinstance(layer, keras.Model):
            out += keras3_names(layer, f"{prefix}layers.{key}.")
        else:
            variables = layer.trainable_variables + layer.non_trainable_variables
            out += [(f"{prefix}layers.{key}.vars.{i}", v) for i, v in enumerate(variables)]
    return out


def snake_case(name: str) -> str:
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", re.sub(r"\W+", "", name))
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def legacy_names(model: keras.Model) -> list[tuple[str, keras.Variable]]:
    """Legacy .h5: model_weights/<layer>/<weight.path>, in the order Keras records."""
    return [(f"{layer.name}.{v.path.replace('/', '.')}", v)
            for layer in model.layers for v in layer.weights]


def record(pairs: list[tuple[str, keras.Variable]]) -> list[dict]:
    out = []
    for name, variable in pairs:
        value = keras.ops.convert_to_numpy(variable)
        source = keras.backend.standardize_dtype(variable.dtype)
        stored = value.astype(np.float32) if source == "bfloat16" else value
        out.append({"name": name, "keras_path": variable.path, "shape": list(value.shape),
                    "source_dtype": source, "dtype": stored.dtype.name,
                    "sha256": digest(stored)})
    return out


def digest(value: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()


def check(path: Path, tensors: list[dict]) -> None:
    """Every expected tensor is in the file Keras wrote, at the path its dotted name implies."""
    archive = zipfile.ZipFile(path) if path.suffix == ".keras" else None
    with h5py.File(archive.open("model.weights.h5") if archive else path, "r") as f:
        for t in tensors:
            if "model_weights" in f:
                layer = t["name"].partition(".")[0]
                dataset = f["model_weights"][layer][t["keras_path"]]
            else:
                dataset = f[t["name"].replace(".", "/")]
            value = dataset[()]
            if t["source_dtype"] == "bfloat16":
                value = (value.view("<u2").astype(np.uint32) << 16).view(np.float32)
            if digest(value) != t["sha256"]:
                raise SystemExit(f"{path}: {t['name']} does not hold Keras' values")
    if archive:
        archive.close()


def main() -> None:
    keras.utils.set_random_seed(0)
    expected = {"keras_version": keras.__version__, "backend": keras.backend.backend(), "files": {}}
    files = expected["files"]
    model = train(sequential())
    model.save_weights(HERE / "sequential.weights.h5")
    model.save(HERE / "sequential.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "HDF5 is legacy": it is what we want
        keras.saving.save_model(model, HERE / "sequential.h5")
    files["sequential.weights.h5"] = files["sequential.keras"] = record(keras3_names(model))
    files["sequential.h5"] = record(legacy_names(model))
    model = randomise(nested())
    model.save_weights(HERE / "nested.weights.h5")
    files["nested.weights.h5"] = record(keras3_names(model))
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    for name, tensors in expected["files"].items():
        check(HERE / name, tensors)
        size = (HERE / name).stat().st_size
        print(f"{name}: {len(tensors)} tensors, {size} bytes")


if __name__ == "__main__":
    main()
