"""Runs the checks of one exercise on a student's copy of minigan, in its own process.

Started by the grader as ``python -I -B _runner.py SPEC.json``: isolated mode
ignores PYTHON* variables and the user's site-packages, and puts neither the
working directory nor this script's folder on ``sys.path``. The script then
puts the student's copy first on ``sys.path``, loads the grader's check files
by path (they are not imported through ``minigan``, which is the student's
package here), imports ``minigan`` and makes sure it is the student's, and
runs the checks one by one. After every step it rewrites a JSON result file,
so a crash or a timeout still leaves everything finished before it.

Nothing here is imported by the grader; it only reads the result file.
"""

import importlib
import importlib.util
import json
import os
import sys
import time
import traceback

CHECKS_MODULE = "_minigan_classroom_checks"
HIDDEN_MODULE = "_minigan_classroom_hidden_checks"


def _write(path, result):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f)
    os.replace(tmp, path)


def error_info(err):
    """Type, message and the traceback frames (file, line, function) of an exception."""
    frames = [[f.filename, f.lineno, f.name] for f in traceback.extract_tb(err.__traceback__)]
    if isinstance(err, SyntaxError) and err.filename:
        frames.append([err.filename, err.lineno or 0, "<module>"])
    message = str(err)
    if isinstance(err, SyntaxError):
        message = err.msg or message
    return {"type": type(err).__name__, "message": message[:1000], "frames": frames[-40:]}


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class _Modules:
    """``stu.functional`` is the student's ``minigan.functional``, imported on first use."""

    def __getattr__(self, name):
        return importlib.import_module("minigan." + name)


def main(spec_path):
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    result = {"phase": "start", "checks": [], "done": False}
    out = spec["result"]
    root = os.path.realpath(spec["root"])

    here = os.path.dirname(os.path.realpath(__file__))
    sys.path[:] = [p for p in sys.path if p and os.path.realpath(p) != here]
    sys.path.insert(0, root)

    import warnings

    import numpy as np  # the grader's NumPy, imported before any student code

    np_errors = np.geterr()
    warning_filters = list(warnings.filters)

    def reset_globals():
        """Undo what a student's code may have changed globally (np.seterr, warning filters)."""
        np.seterr(**np_errors)
        warnings.filters[:] = warning_filters

    checks = _load(CHECKS_MODULE, spec["checks_files"][0])
    for path in spec["checks_files"][1:]:
        _load(HIDDEN_MODULE, path)
    with np.load(spec["fixtures"], allow_pickle=False) as data:
        fixtures = {k: data[k] for k in data.files}

    result["phase"] = "import"
    _write(out, result)
    started = time.perf_counter()
    try:
        import minigan
        where = os.path.realpath(getattr(minigan, "__file__", None) or "")
        if not where.startswith(root + os.sep):
            raise ImportError(
                f"'import minigan' found {where or 'a namespace package'}, not the copy being "
                f"graded in {root}: is the folder the one that contains minigan/?")
    except BaseException as err:  # noqa: BLE001 - a student's import may raise anything
        result["import_error"] = error_info(err)
        result["phase"] = "done"
        result["done"] = True
        _write(out, result)
        return
    result["import_seconds"] = time.perf_counter() - started
    stu = _Modules()

    for item in spec["checks"]:
        chk = checks.CHECKS[(item["target"], item["name"])]
        prefix = item["key"] + "__"
        fx = {k[len(prefix):]: v for k, v in fixtures.items() if k.startswith(prefix)}
        result["phase"] = "check"
        result["current"] = item["key"]
        _write(out, result)
        reset_globals()
        started = time.perf_counter()
        entry = {"key": item["key"]}
        try:
            note = chk.run(stu, fx)
            entry.update(status="pass", message=note or "")
        except checks.Fail as fail:
            entry.update(status="fail", message=str(fail))
        except BaseException as err:  # noqa: BLE001 - SystemExit, KeyboardInterrupt, anything
            entry.update(status="error", error=error_info(err))
        entry["seconds"] = time.perf_counter() - started
        result["checks"].append(entry)
    result["phase"] = "done"
    result["done"] = True
    result.pop("current", None)
    _write(out, result)


if __name__ == "__main__":
    main(sys.argv[1])
