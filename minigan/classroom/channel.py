"""The data-only channel between the grader and a student runner: arrays in, arrays out.

Both directions are an ``.npz`` of plain NumPy arrays (read with
``allow_pickle=False``) plus a small JSON file. A value a student's code
returned is *described*, never pickled: arrays and numbers travel as arrays;
None, tuples, lists and dicts as a JSON skeleton whose leaves are arrays; any
other object as a short text ("a MyCache"). The grader rebuilds the value from
that, so it never runs, unpickles or imports anything the student wrote.

Loaded by path in the runner (stdlib and NumPy only), imported normally in the grader.
"""

from __future__ import annotations

import json
import os
import threading
import zipfile

import numpy as np

MAX_DEPTH = 3          # (out, cache) -> cache -> (x, W): deep enough for every probe
MAX_ITEMS = 32         # items of a tuple/dict kept; a student's huge list is described
MAX_TEXT = 120         # characters of any text the student controls (type names, keys)


class Opaque:
    """A value the channel does not carry (a student's object): only its description."""

    def __init__(self, text):
        self.text = str(text)[:MAX_TEXT]

    def __repr__(self):
        return f"<{self.text}>"


def describe_type(value) -> str:
    mod = type(value).__module__ or ""
    name = type(value).__name__
    if mod.startswith("cupy"):
        return f"a CuPy array of shape {getattr(value, 'shape', '?')} (the grader runs on NumPy)"
    return f"a {name}"


def encode(value, arrays: dict, prefix: str, depth=0):
    """The JSON skeleton of ``value``; its arrays are added to ``arrays`` under ``prefix``."""
    if value is None:
        return {"k": "none"}
    if isinstance(value, (bool, int, float, np.generic)) and not isinstance(value, np.object_):
        value = np.asarray(value)
    if type(value) is np.ndarray:
        if value.dtype.hasobject or value.dtype.kind not in "biufc":
            return {"k": "opaque", "t": f"an array of dtype {value.dtype}"}
        arrays[prefix] = np.array(value, copy=True)
        return {"k": "array"}
    if isinstance(value, np.ndarray):  # a subclass (np.matrix, a student's class)
        return {"k": "opaque", "t": f"a {type(value).__name__} (an ndarray subclass)"}
    if isinstance(value, (tuple, list)) and depth < MAX_DEPTH:
        if len(value) > MAX_ITEMS:
            return {"k": "opaque", "t": f"a {type(value).__name__} of {len(value)} items"}
        return {"k": "seq", "t": type(value).__name__ if type(value) in (tuple, list) else "tuple",
                "items": [encode(v, arrays, f"{prefix}.{i}", depth + 1) for i, v in enumerate(value)]}
    if isinstance(value, dict) and depth < MAX_DEPTH and len(value) <= MAX_ITEMS \
            and all(type(k) is str for k in value):
        keys = list(value)
        return {"k": "dict", "keys": [k[:MAX_TEXT] for k in keys],
                "items": [encode(value[k], arrays, f"{prefix}.{i}", depth + 1)
                          for i, k in enumerate(keys)]}
    return {"k": "opaque", "t": describe_type(value)}


def decode(skeleton, arrays: dict, prefix: str, depth=0):
    """The value ``encode`` described; anything malformed becomes an Opaque."""
    if not isinstance(skeleton, dict) or depth > MAX_DEPTH + 1:
        return Opaque("something the grader could not read")
    kind = skeleton.get("k")
    if kind == "none":
        return None
    if kind == "array":
        return arrays.get(prefix, Opaque("a missing array"))
    if kind == "seq" and isinstance(skeleton.get("items"), list):
        items = [decode(s, arrays, f"{prefix}.{i}", depth + 1)
                 for i, s in enumerate(skeleton["items"][:MAX_ITEMS])]
        return items if skeleton.get("t") == "list" else tuple(items)
    if kind == "dict" and isinstance(skeleton.get("keys"), list) and isinstance(skeleton.get("items"), list):
        return {str(k)[:MAX_TEXT]: decode(s, arrays, f"{prefix}.{i}", depth + 1)
                for i, (k, s) in enumerate(zip(skeleton["keys"][:MAX_ITEMS], skeleton["items"]))}
    return Opaque(skeleton.get("t", "an object"))


# ------------------------------------------------------------------------ files


def save_arrays(path, arrays: dict):
    """Write ``arrays`` to ``path`` (an .npz) through a temporary name."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


#: CPython 3.11 keeps the AST constructor's recursion counter per interpreter: two
#: threads building an AST at once corrupt it ("SystemError: AST constructor recursion
#: depth mismatch", gh-106905). The grader parses sources in a thread pool, and NumPy
#: parses every .npy header with ast.literal_eval: each of them holds this lock.
AST_LOCK = threading.Lock()


def load_arrays(path, max_bytes: int) -> dict:
    """The arrays of an .npz written by the other side, refusing anything odd or too large."""
    if not os.path.isfile(path) or os.path.islink(path):
        return {}
    if os.path.getsize(path) > max_bytes:
        raise ValueError(f"{os.path.basename(path)} is larger than {max_bytes} bytes")
    with zipfile.ZipFile(path) as zf:  # a zip bomb would unpack past the cap: check first
        if sum(i.file_size for i in zf.infolist()) > 4 * max_bytes:
            raise ValueError(f"{os.path.basename(path)} unpacks to more than {4 * max_bytes} bytes")
    with AST_LOCK, np.load(path, allow_pickle=False) as data:  # data[k] parses a header
        return {k: data[k] for k in data.files}


def save_json(path, obj):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def load_json(path, max_bytes: int):
    """A JSON file the other side wrote, or None when it is missing, too large or malformed."""
    try:
        if not os.path.isfile(path) or os.path.islink(path) or os.path.getsize(path) > max_bytes:
            return None
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError, RecursionError):  # RecursionError: '[[[[...' from a runner
        return None
