"""The student runner: calls a student's minigan through the probes, in a sandboxed process.

Started by the grader (see sandbox.py) as::

    python -I -S -B _runner.py JOB_DIR OUT_DIR SUBMISSION_ROOT [SITE_DIR ...]

JOB_DIR holds ``job.json`` (which probes to run, with which options) and
``inputs.npz`` (the arrays). The runner writes ``results.npz`` and
``results.json`` to OUT_DIR after every probe, and ``progress.json`` before
each, so a crash or a timeout still leaves what finished. It judges nothing:
the grader reads these files as untrusted data.

``minigan`` is registered as a bare package over SUBMISSION_ROOT/minigan, WITHOUT
running its ``__init__.py``: each probe imports only the modules it needs
(``minigan.functional``, ``minigan.optim``, ...), so a syntax error in
``optim.py`` costs only the exercises that import it.
"""

import importlib
import importlib.util
import os
import sys
import time
import traceback
import types


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _relative(filename, root):
    path = os.path.realpath(filename or "")
    if path.startswith(root + os.sep):
        return os.path.relpath(path, root).replace(os.sep, "/")
    return None


def error_info(err, root):
    """Type, message and the frames (file relative to the submission, line, function)."""
    frames = []
    for f in traceback.extract_tb(err.__traceback__):
        rel = _relative(f.filename, root)
        if rel is not None:
            frames.append([rel, f.lineno, f.name])
    if isinstance(err, SyntaxError) and err.filename:
        rel = _relative(err.filename, root)
        if rel is not None:
            frames.append([rel, err.lineno or 0, "<module>"])
    message = (err.msg or str(err)) if isinstance(err, SyntaxError) else str(err)
    return {"type": type(err).__name__[:80], "message": message[:600], "frames": frames[-20:]}


class _Modules:
    """``stu.functional`` is the student's ``minigan.functional``, imported on first use."""

    def __getattr__(self, name):
        return importlib.import_module("minigan." + name)


def _bare_package(root):
    """``minigan`` as a package over the student's folder, its __init__.py not run."""
    pkg = types.ModuleType("minigan")
    pkg.__path__ = [os.path.join(root, "minigan")]
    pkg.__file__ = os.path.join(root, "minigan", "__init__.py")
    pkg.__package__ = "minigan"
    sys.modules["minigan"] = pkg


def main(job_dir, out_dir, root, sites):
    here = os.path.dirname(os.path.realpath(__file__))
    root = os.path.realpath(root)
    sys.path[:] = [root] + list(sites) + [p for p in sys.path if p and os.path.realpath(p) != here]
    channel = _load("_minigan_classroom_channel", os.path.join(here, "channel.py"))
    probes = _load("_minigan_classroom_probes", os.path.join(here, "probes.py"))

    import warnings

    import numpy as np  # imported before any student code

    np_errors, filters = np.geterr(), list(warnings.filters)
    job = channel.load_json(os.path.join(job_dir, "job.json"), 1 << 20)
    inputs = channel.load_arrays(os.path.join(job_dir, "inputs.npz"), 256 << 20)
    _bare_package(root)
    stu = _Modules()
    arrays, results = {}, {}
    for item in job["items"]:
        key = item["key"]
        channel.save_json(os.path.join(out_dir, "progress.json"), {"current": key})
        cases = {}
        for case in item["cases"]:
            suffix = case["suffix"]
            inp = {k[len(key) + 2:-len(suffix) or None]: v for k, v in inputs.items()
                   if k.startswith(key + "__") and k.endswith(suffix)}
            np.seterr(**np_errors)
            warnings.filters[:] = filters
            started = time.perf_counter()
            try:
                out = probes.PROBES[item["probe"]](stu, inp, case.get("opt", {}))
                entry = {"status": "ok", "value": channel.encode(out, arrays, f"{key}/{suffix}")}
            except BaseException as err:  # noqa: BLE001 - SystemExit, anything a student raises
                entry = {"status": "error", "error": error_info(err, root)}
            entry["seconds"] = time.perf_counter() - started
            cases[suffix] = entry
        results[key] = cases
        channel.save_arrays(os.path.join(out_dir, "results.npz"), arrays)
        channel.save_json(os.path.join(out_dir, "results.json"), {"items": results, "done": False})
    channel.save_json(os.path.join(out_dir, "results.json"), {"items": results, "done": True})
    channel.save_json(os.path.join(out_dir, "progress.json"), {"current": None})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
