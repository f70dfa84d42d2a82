"""Save and restore a whole GAN training state in one ``.npz`` file, without pickle.

    save_checkpoint("run/checkpoint.npz", gan, config, extra={"data": ...})
    gan, config, extra = load_checkpoint("run/checkpoint.npz")

One file holds everything a run needs to continue exactly where it stopped:

* G and D (parameters and buffers such as batch norm's running statistics),
  and the moving average of G (``gan.ema.G``, stored as ``G_ema``) when there is one;
* both optimisers (Adam's moments, step count t and learning rate);
* the step, the noise generator's state (the NumPy ``bit_generator.state``,
  stored as JSON), the states of dropout layers' generators, the history;
* the regulariser of D's step (``gan.regularizer``): its type and, for one that
  has a ``state_dict`` (``GradientPenalty``: the generator of its interpolation
  epsilons; ``R1``: where its lazy schedule stands), that state, so such a run
  resumes bit-exactly. Spectral norm's
  u and v are buffers of D, stored with its parameters;
* the architecture ``config`` (the dict ``minigan.models.build_gan`` takes), so
  ``load_checkpoint`` can rebuild the networks before filling them in;
* ``extra``: anything JSON-able the caller wants back (the command line keeps
  its data generator's state there); NumPy arrays in it are stored as arrays.

Arrays are stored under names like ``G/0.W`` and ``opt_d/m.3``; everything else
is one JSON document in the ``__meta__`` entry, a uint8 array. Loading uses
``np.load(allow_pickle=False)``: a checkpoint never runs code. Writing goes to
a temporary file in the same folder, renamed into place when complete, so a
crash never leaves a half-written checkpoint under the real name.

On NumPy, resuming is bit-identical: N steps, save, load, N more steps give the
same weights as 2N steps in one go (given the same real batches).
"""

from __future__ import annotations

import json
import os
import zipfile
from collections import namedtuple

import numpy as np

from minigan._atomic import atomic_open
from minigan.backend import to_numpy

__all__ = ["save_checkpoint", "load_checkpoint", "read_metadata", "Checkpoint",
           "CheckpointError", "CheckpointVersionError", "ArchitectureMismatchError",
           "FORMAT", "FORMAT_VERSION"]

FORMAT = "minigan-checkpoint"
#: 2: the GAN of minigan 0.2 (loss objects, Pack and EMA as objects; a packing
#: D's layers are numbered from its Pack layer). Version 1 files are refused
#: with a message that names both versions. The metadata entry "regularizer"
#: came later within version 2: a file without it was written before a config
#: could ask for a penalty, and loads as a GAN without a regulariser's state.
FORMAT_VERSION = 2
META_KEY = "__meta__"


class CheckpointError(ValueError):
    """A file that cannot be read as a minigan checkpoint (truncated, corrupt, foreign)."""


class CheckpointVersionError(CheckpointError):
    """A checkpoint written in a format version this minigan does not read."""


class ArchitectureMismatchError(CheckpointError):
    """A checkpoint whose arrays do not fit the model they are loaded into."""


#: What ``load_checkpoint`` returns; unpacks as ``gan, config, extra``.
Checkpoint = namedtuple("Checkpoint", ["gan", "config", "extra"])


# ----------------------------------------------------------------------- helpers


def _dropout_states(model):
    """{layer path: bit_generator state} for dropout layers with their own generator."""
    from minigan.layers import Dropout

    return {name: layer.rng.bit_generator.state for name, layer in model.named_modules()
            if isinstance(layer, Dropout) and layer.rng is not None}


def _set_dropout_states(model, states, who):
    from minigan.layers import Dropout

    layers = dict(model.named_modules())
    for name, state in states.items():
        layer = layers.get(name)
        if not isinstance(layer, Dropout) or layer.rng is None:
            raise ArchitectureMismatchError(
                f"the checkpoint has a dropout generator for {who} layer {name!r}, but that "
                "layer is not a seeded Dropout in this model (another architecture?)")
        layer.rng.bit_generator.state = state


def _layer_kinds(model):
    """{layer path: kind}: what the weights alone do not say (a ReLU and a Tanh, or
    two leaky slopes, hold no arrays), checked on load so that a checkpoint of
    another architecture is not run through a same-shaped model."""
    kinds = {}
    for name, layer in model.named_modules():
        kind = type(layer).__name__
        if hasattr(layer, "negative_slope"):
            kind += f"({layer.negative_slope:g})"
        kinds[name] = kind
    return kinds


def _check_layer_kinds(model, saved, who, path):
    if saved is None:
        return  # written before layer kinds were stored
    own = _layer_kinds(model)
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path!r}: metadata entry 'layers.{who}' must be a dict, got "
                              f"{type(saved).__name__}")
    for name in sorted(set(own) | set(saved)):
        if own.get(name) != saved.get(name):
            raise ArchitectureMismatchError(
                f"{path!r} was saved from another architecture: {who} layer {name or '(top)'!r} "
                f"is {saved.get(name, 'missing')} in the checkpoint but "
                f"{own.get(name, 'missing')} in the model")


def _rng_state(rng):
    """A NumPy generator's state (JSON-able); None for a CuPy generator, whose state
    a checkpoint cannot carry (the resumed run then draws other noise)."""
    bit_generator = getattr(rng, "bit_generator", None)
    return bit_generator.state if isinstance(bit_generator, np.random.BitGenerator) else None


def _regularizer_state(regularizer):
    """{"type": class name[, "state": its state_dict()]} for the GAN's regulariser,
    None without one. The state (GradientPenalty's epsilon generator) is JSON."""
    if regularizer is None:
        return None
    entry = {"type": type(regularizer).__name__}
    if hasattr(regularizer, "state_dict"):
        entry["state"] = regularizer.state_dict()
    return entry


def _load_regularizer(gan, saved, path):
    """Put a stored regulariser state back; the types must agree (a file without the
    entry, written before it existed, has nothing to put back)."""
    own = getattr(gan, "regularizer", None)
    own_type = type(own).__name__ if own is not None else None
    saved_type = saved["type"] if saved is not None else None
    if own_type != saved_type:
        raise ArchitectureMismatchError(
            f"{path!r} was saved from a GAN with regularizer {saved_type or 'None'} but this "
            f"GAN's is {own!r}; load it without gan= (the stored config rebuilds the right "
            "one) or set gan.regularizer after loading")
    if saved is not None and "state" in saved:
        if not hasattr(own, "load_state_dict"):
            raise ArchitectureMismatchError(
                f"{path!r} holds a state for the {saved_type} regulariser, but this GAN's "
                f"{own!r} cannot take one (no load_state_dict)")
        every = saved["state"].get("every")
        if every is not None and getattr(own, "every", None) != every:
            # lazy R1: another period would penalise other steps than the saved run's
            raise ArchitectureMismatchError(
                f"{path!r} was saved from a run whose R1 penalised every {every} D steps, "
                f"but this GAN's is {own!r}; build it with R1(..., every={every}) (or load "
                "without gan=) to resume the same schedule")
        own.load_state_dict(saved["state"])


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _to_json(obj, what):
    try:
        return json.dumps(obj, default=_json_default, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise TypeError(f"the checkpoint's {what} must be JSON-serialisable (numbers, strings, "
                        f"lists, dicts; arrays go in extra): {err}") from None


def _optimizer_state(opt, prefix, arrays):
    """Scalars of an optimiser's state_dict to return (JSON), arrays into ``arrays``."""
    scalars = {}
    for key, value in opt.state_dict().items():
        if hasattr(value, "shape"):
            arrays[f"{prefix}/{key}"] = to_numpy(value)
        else:
            scalars[key] = value
    return {"type": type(opt).__name__, "state": scalars}


def _history_columns(history, arrays):
    records = getattr(history, "records", None)
    if not records:
        return []
    keys = list(records[0])
    for k in keys:
        values = [r.get(k, np.nan) for r in records]
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            arrays[f"history/{k}"] = np.asarray(values, dtype=np.int64)
        else:
            arrays[f"history/{k}"] = np.asarray(values, dtype=np.float64)
    return keys


# -------------------------------------------------------------------------- save


def save_checkpoint(path, gan, config, extra=None):
    """Write G, D, optimisers, step, RNG states, history and ``config`` to ``path``.

    ``config`` must be JSON-serialisable (it is stored as JSON). ``extra`` is a
    dict of JSON-serialisable values or NumPy/CuPy arrays, returned as is by
    ``load_checkpoint``. The file is written atomically. Returns the path.
    """
    path = os.fspath(path)
    arrays = {}
    for who, model in (("G", gan.G), ("D", gan.D)):
        for k, v in model.state_dict().items():
            arrays[f"{who}/{k}"] = to_numpy(v)
    if gan.ema is not None:
        for k, v in gan.ema.G.state_dict().items():
            arrays[f"G_ema/{k}"] = to_numpy(v)

    extra_json = {}
    extra_arrays = []
    for k, v in (extra or {}).items():
        if hasattr(v, "shape") and hasattr(v, "dtype"):
            if v.dtype == object:
                raise TypeError(f"extra[{k!r}] is an object array, which cannot be stored "
                                "without pickle")
            arrays[f"extra/{k}"] = to_numpy(v)
            extra_arrays.append(k)
        else:
            extra_json[k] = v

    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "minigan_version": _minigan_version(),
        "config": config,
        "step": int(gan.step),
        "latent_dim": int(gan.latent_dim),
        "dtype": str(gan.dtype),
        "backend": gan.G.backend,
        "noise_rng": _rng_state(gan.rng),
        "dropout_rng": {"G": _dropout_states(gan.G), "D": _dropout_states(gan.D)},
        "regularizer": _regularizer_state(getattr(gan, "regularizer", None)),
        "layers": {"G": _layer_kinds(gan.G), "D": _layer_kinds(gan.D)},
        "ema_updates": gan.ema.updates if gan.ema is not None else 0,
        "optimizers": {
            "g": _optimizer_state(gan.g_optimizer, "opt_g", arrays),
            "d": _optimizer_state(gan.d_optimizer, "opt_d", arrays),
        },
        "history_keys": _history_columns(gan.history, arrays),
        "extra": extra_json,
        "extra_arrays": extra_arrays,
    }
    meta["arrays"] = sorted(arrays)  # the list a loader checks for completeness
    meta_text = _to_json(meta, "config and extra")
    arrays[META_KEY] = np.frombuffer(meta_text.encode("utf-8"), dtype=np.uint8)

    with atomic_open(path) as f:
        np.savez(f, **arrays)
    return path


def _minigan_version():
    import minigan

    return minigan.__version__


# -------------------------------------------------------------------------- load


def _read(path):
    """(meta dict, {name: NumPy array}) of a checkpoint file, with clear errors."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r} (file not found)")
    if os.path.isdir(path):
        raise CheckpointError(f"{path!r} is a directory, not a checkpoint file "
                              f"(did you mean {os.path.join(path, 'checkpoint.npz')!r}?)")
    with open(path, "rb") as f:
        head = f.read(4)
    size = os.path.getsize(path)
    if head != b"PK\x03\x04":
        what = "an empty file" if size == 0 else f"a file starting with {head!r}"
        raise CheckpointError(
            f"{path!r} is not a minigan checkpoint: expected an .npz (zip) file written by "
            f"minigan.save_checkpoint, found {what}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            if META_KEY not in names:
                raise CheckpointError(
                    f"{path!r} is an .npz file but not a minigan checkpoint: it has no "
                    f"{META_KEY!r} entry (its arrays: {names[:8]}{' ...' if len(names) > 8 else ''})")
            arrays = {name: npz[name] for name in names}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as err:
        raise CheckpointError(
            f"{path!r} is truncated or corrupt ({size} bytes): it starts like an .npz file but "
            f"cannot be read ({type(err).__name__}: {err}). Was the run interrupted while "
            "copying it? Use an intact copy.") from None
    try:
        meta = json.loads(arrays.pop(META_KEY).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path!r}: the checkpoint's metadata is corrupt ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path!r} is not a minigan checkpoint (its metadata does not say "
                              f"format={FORMAT!r})")
    version = meta.get("version")
    if version != FORMAT_VERSION:
        raise CheckpointVersionError(
            f"{path!r} is a minigan checkpoint in format version {version!r} (written by "
            f"minigan {meta.get('minigan_version', '?')}), but this minigan "
            f"({_minigan_version()}) reads version {FORMAT_VERSION}. Load it with the "
            "minigan version that wrote it.")
    _check_meta(meta, arrays, path)
    return meta, arrays


# what each metadata entry must be: (name, accepted types, what to say)
_META_ENTRIES = (
    ("config", (dict,), "a dict"),
    ("step", (int,), "an integer"),
    ("latent_dim", (int,), "an integer"),
    ("noise_rng", (dict, type(None)), "a dict or null"),
    ("dropout_rng", (dict,), "a dict"),
    ("optimizers", (dict,), "a dict"),
    ("history_keys", (list,), "a list"),
    ("extra", (dict,), "a dict"),
    ("extra_arrays", (list,), "a list"),
    ("arrays", (list,), "a list"),
)


def _bad_meta(path, entry, expected, value):
    return CheckpointError(f"{path!r} is damaged or hand-made: its metadata entry {entry!r} "
                           f"must be {expected}, got {type(value).__name__} {str(value)[:60]}. "
                           "Use a checkpoint written by minigan.save_checkpoint.")


def _check_meta(meta, arrays, path):
    """Every metadata entry the loader uses, checked before any is used, so a
    damaged or hand-made file is a CheckpointError that names the entry (not a
    KeyError or TypeError from deep inside the loader)."""
    for entry, types, expected in _META_ENTRIES:
        if entry not in meta:
            raise CheckpointError(f"{path!r} is damaged or hand-made: its metadata has no "
                                  f"{entry!r} entry")
        value = meta[entry]
        if not isinstance(value, types) or isinstance(value, bool):
            raise _bad_meta(path, entry, expected, value)
    if meta["step"] < 0:
        raise _bad_meta(path, "step", "an integer >= 0", meta["step"])
    regularizer = meta.get("regularizer")   # optional: absent in older version-2 files
    if regularizer is not None and not (
            isinstance(regularizer, dict) and isinstance(regularizer.get("type"), str)
            and isinstance(regularizer.get("state", {}), dict)):
        raise _bad_meta(path, "regularizer", "null or a dict with 'type' (a string) and "
                        "optionally 'state' (a dict)", regularizer)
    for who in ("G", "D"):
        if not isinstance(meta["dropout_rng"].get(who), dict):
            raise _bad_meta(path, f"dropout_rng.{who}", "a dict", meta["dropout_rng"].get(who))
    for who in ("g", "d"):
        opt = meta["optimizers"].get(who)
        if not (isinstance(opt, dict) and isinstance(opt.get("type"), str)
                and isinstance(opt.get("state"), dict)):
            raise _bad_meta(path, f"optimizers.{who}", "a dict with 'type' (a string) and "
                            "'state' (a dict)", opt)
    listed = meta["arrays"] + [f"history/{k}" for k in meta["history_keys"]] + \
        [f"extra/{k}" for k in meta["extra_arrays"]]
    missing = sorted({str(k) for k in listed} - set(arrays))
    if missing:
        raise CheckpointError(f"{path!r} is incomplete: arrays {missing[:5]} listed in its "
                              "metadata are missing")


def read_metadata(path):
    """The checkpoint's metadata dict (config, step, versions, ...), checked as on load."""
    return _read(path)[0]


def _prefixed(arrays, prefix):
    n = len(prefix) + 1
    return {k[n:]: v for k, v in arrays.items() if k.startswith(prefix + "/")}


def _load_model(model, state, who, path, kinds=None):
    """Check names and shapes against the model (naming any mismatch), then copy in place."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"{who} has keys {missing} that the checkpoint lacks")
        if unexpected:
            problems.append(f"the checkpoint has {who} keys {unexpected} that the model lacks")
        raise ArchitectureMismatchError(
            f"{path!r} was saved from another architecture: {'; '.join(problems)}")
    for k, target in own.items():
        value = state[k]
        if tuple(value.shape) != tuple(target.shape):
            raise ArchitectureMismatchError(
                f"{path!r} was saved from another architecture: {who} '{k}' has shape "
                f"{tuple(value.shape)} in the checkpoint but {tuple(target.shape)} in the model")
        if value.dtype.kind != "f":
            raise CheckpointError(f"{path!r}: {who} '{k}' must hold floating-point numbers, "
                                  f"got {value.dtype}")
        # NaN weights would load and sample NaN without a word: refuse them by name
        if not np.isfinite(value).all():
            raise CheckpointError(
                f"{path!r}: {who} '{k}' holds NaN or inf, so the model cannot be used (the "
                "run had diverged when this was saved?). Use an earlier checkpoint.")
    _check_layer_kinds(model, kinds, who, path)
    model.load_state_dict(state)


def _load_optimizer(opt, saved, arrays, who, path):
    if saved["type"] != type(opt).__name__:
        raise ArchitectureMismatchError(
            f"{path!r}: the {who} optimiser was a {saved['type']} but this GAN's is a "
            f"{type(opt).__name__}")
    state = dict(saved["state"])
    state.update(arrays)
    try:
        opt.load_state_dict(state)
    except (ValueError, TypeError) as err:
        raise ArchitectureMismatchError(f"{path!r}: {who} optimiser state does not fit: {err}") \
            from None


def _load_ema(gan, ema_state, meta, path):
    if ema_state and gan.ema is None:
        raise ArchitectureMismatchError(
            f"{path!r} holds a moving average of G (G_ema) but this GAN keeps none "
            "(build it with ema=EMA(G, decay))")
    if gan.ema is not None:
        if not ema_state:
            raise ArchitectureMismatchError(
                f"{path!r} holds no moving average of G but this GAN keeps one ({gan.ema!r}); "
                "it was saved from a GAN without an EMA")
        _load_model(gan.ema.G, ema_state, "G_ema", path)
        gan.ema.updates = int(meta.get("ema_updates", 0))


def load_checkpoint(path, backend=None, gan=None):
    """Read a checkpoint: ``(gan, config, extra)`` as a ``Checkpoint`` named tuple.

    Without ``gan``, a new GAN is built from the stored config with
    ``minigan.models.build_gan`` on ``backend`` (default: the current backend)
    and filled in. With ``gan``, the state is loaded into that GAN in place; a
    checkpoint of another architecture raises ``ArchitectureMismatchError``,
    naming the key and both shapes. A missing file raises FileNotFoundError; a
    truncated, corrupt or foreign file ``CheckpointError``; a file of another
    format version ``CheckpointVersionError``.
    """
    path = os.fspath(path)
    meta, arrays = _read(path)
    config = meta["config"]
    if gan is None:
        from minigan.models import build_gan

        try:
            gan = build_gan(config, backend=backend, seed=0)
        except (TypeError, ValueError, KeyError) as err:
            raise CheckpointError(f"{path!r}: cannot rebuild the GAN from the stored config "
                                  f"({err})") from None
    elif backend is not None and gan.G.backend != backend:
        raise ValueError(f"the GAN is on {gan.G.backend} but backend={backend!r} was asked for")

    layers = meta.get("layers") or {}
    _load_model(gan.G, _prefixed(arrays, "G"), "G", path, layers.get("G"))
    _load_model(gan.D, _prefixed(arrays, "D"), "D", path, layers.get("D"))
    _load_ema(gan, _prefixed(arrays, "G_ema"), meta, path)
    opts = meta["optimizers"]
    _load_optimizer(gan.g_optimizer, opts["g"], _prefixed(arrays, "opt_g"), "generator", path)
    _load_optimizer(gan.d_optimizer, opts["d"], _prefixed(arrays, "opt_d"), "discriminator", path)

    gan.step = int(meta["step"])
    try:
        if meta["noise_rng"] is not None and _rng_state(gan.rng) is not None:
            gan.rng.bit_generator.state = meta["noise_rng"]
        _set_dropout_states(gan.G, meta["dropout_rng"]["G"], "G")
        _set_dropout_states(gan.D, meta["dropout_rng"]["D"], "D")
    except (TypeError, ValueError, KeyError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"{path!r}: a stored generator state ('noise_rng' or "
                              f"'dropout_rng') is damaged ({type(err).__name__}: {err})") from None
    if "regularizer" in meta:   # absent in version-2 files written before it existed
        try:
            _load_regularizer(gan, meta["regularizer"], path)
        except (TypeError, ValueError, KeyError) as err:
            if isinstance(err, CheckpointError):
                raise
            raise CheckpointError(f"{path!r}: the stored state of the regularizer ('regularizer') "
                                  f"is damaged ({type(err).__name__}: {err})") from None
    from minigan.gan import History

    keys = meta.get("history_keys", [])
    columns = [arrays[f"history/{k}"].tolist() for k in keys]
    gan.history = History([dict(zip(keys, row)) for row in zip(*columns)])
    gan.G.clear_cache()
    gan.D.clear_cache()

    extra = dict(meta.get("extra", {}))
    for k in meta.get("extra_arrays", []):
        extra[k] = arrays[f"extra/{k}"]
    return Checkpoint(gan, config, extra)
