"""Store a Keras ``.weights.h5`` file's float32 weights as float16 on disk.

    python scripts/training/float16_weights.py \\
        keras_specdec/pairs/code/*/model.weights.h5

The shipped presets keep their float32 dtype policy in ``config.json``: Keras
builds float32 variables and `Variable.assign` casts each float16 dataset to
float32 when the weights are loaded, so a loaded model computes in float32
with weights equal to the float16-rounded originals. This halves the size of
the package's model files. `check_loaded` verifies exactly that for a model
loaded from such a file.
"""

import json
import os
import shutil

import h5py
import numpy as np

FLOAT16_MAX = float(np.finfo(np.float16).max)


def _copy(source, dest, counts):
    for key, value in source.attrs.items():
        dest.attrs[key] = value
    for name, item in source.items():
        if isinstance(item, h5py.Group):
            _copy(item, dest.create_group(name), counts)
            continue
        data = item[()]
        if isinstance(data, np.ndarray) and data.dtype == np.float32:
            peak = float(np.abs(data).max()) if data.size else 0.0
            if peak > FLOAT16_MAX:
                raise ValueError(f"{item.name} has |value| {peak} > float16 max")
            data = data.astype(np.float16)
            counts["float16"] += data.size
        else:
            counts["kept"] += getattr(data, "size", 1)
        dataset = dest.create_dataset(name, data=data)
        for key, value in item.attrs.items():
            dataset.attrs[key] = value


def store_float16(path):
    """Rewrite `path` (a Keras weights h5 file) with float16 datasets in
    place of float32 ones. Returns ``{"float16": n, "kept": m}`` value counts.
    The file is written anew (h5 does not shrink in place) and swapped in."""
    tmp = path + ".tmp.h5"
    counts = {"float16": 0, "kept": 0}
    with h5py.File(path, "r") as source, h5py.File(tmp, "w") as dest:
        _copy(source, dest, counts)
    os.replace(tmp, path)
    return counts


def stored_dtypes(path):
    """Set of the dtypes of the datasets in an h5 file."""
    dtypes = set()

    def visit(_, item):
        if isinstance(item, h5py.Dataset):
            dtypes.add(str(item.dtype))

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return dtypes


def check_loaded(original_weights, loaded_model):
    """Assert that `loaded_model` (built from a float16-stored preset) holds
    float32 variables equal to `original_weights` rounded to float16."""
    variables = loaded_model.weights
    assert len(variables) == len(original_weights), (
        len(variables),
        len(original_weights),
    )
    for variable, original in zip(variables, original_weights):
        assert variable.dtype == "float32", (variable.path, variable.dtype)
        value = np.asarray(variable.numpy())
        expected = np.asarray(original).astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(value, expected, err_msg=variable.path)


WEIGHTS_STORAGE = (
    "float16 on disk (model.weights.h5); config.json keeps the float32 dtype "
    "policy, so loading builds float32 variables holding the float16-rounded "
    "trained weights"
)


def store_preset_float16(preset_dir, task, task_cls):
    """Store the weights of the preset `task` was just saved to
    (`save_to_preset(preset_dir)`) in float16, then check that
    `task_cls.from_preset(preset_dir)` builds a float32 model holding `task`'s
    weights rounded to float16. Returns `WEIGHTS_STORAGE` (for training.json)."""
    original = [np.asarray(w.numpy()) for w in task.weights]
    for name in sorted(os.listdir(preset_dir)):
        if name.endswith(".weights.h5"):
            store_float16(os.path.join(preset_dir, name))
    loaded = task_cls.from_preset(preset_dir, preprocessor=None)
    assert loaded.dtype_policy.name == "float32", loaded.dtype_policy
    check_loaded(original, loaded)
    return WEIGHTS_STORAGE


def export_preset(task, out, task_cls, ckpt_dir):
    """Save `task` as a preset in `out` (replacing what is there), its
    weights in float16 (`store_preset_float16`), and read the progress.json
    of the training output dir `ckpt_dir` it came from.

    Returns:
        `(weights_storage, progress)` for training.json.
    """
    shutil.rmtree(out, ignore_errors=True)
    task.save_to_preset(out)
    weights_storage = store_preset_float16(out, task, task_cls)
    with open(os.path.join(ckpt_dir, "progress.json")) as f:
        progress = json.load(f)
    return weights_storage, progress


def exported_record(ckpt_dir, progress):
    """The progress record of the weights an export script loads from a
    training output dir: the best one where best.weights.h5 is there (what
    the export loads), else the last (checkpoint.keras)."""
    if os.path.exists(os.path.join(ckpt_dir, "best.weights.h5")):
        return progress.get("best", progress["history"][-1])
    return progress["history"][-1]


def main():
    import argparse

    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "files",
        nargs="+",
        help="The .weights.h5 files to rewrite in place with float16 weights.",
    )
    for file in p.parse_args().files:
        before = os.path.getsize(file)
        counts = store_float16(file)
        print(f"{file}: {before:,} -> {os.path.getsize(file):,} bytes, {counts}")


if __name__ == "__main__":
    main()
