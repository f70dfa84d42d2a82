"""Red team: every cheat and runaway from issue 14, graded; none may score more than without it.

Each test plants a cheat into a submission and grades it next to the same
submission without the cheat. The cheats that need the sandbox's isolation
(reading the teacher's files, a daemon that outlives the grader) skip, saying
why, where bubblewrap is missing; the rest hold with any sandbox.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from minigan.classroom import grader, markers, sandbox
from minigan.classroom.release import release

from test_classroom import STUDENT_SOLUTIONS, fill_in  # noqa: I001 - the tests' own helpers

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not markers.scan(REPO), reason="the library has no solution regions")

BOX = sandbox.detect()
isolated = pytest.mark.skipif(
    BOX.name != "bwrap",
    reason=f"needs bubblewrap's namespaces (apt-get install bubblewrap); here: {BOX.describe()}")
EXERCISES = ["1.2", "3.2"]   # small, quick: one layer, one optimiser


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A release with every exercise cut out, and a copy with 1.1 done (1.2 and 3.2 still open)."""
    root = tmp_path_factory.mktemp("red")
    release(root / "fresh")
    honest = root / "honest"
    shutil.copytree(root / "fresh", honest)
    fill_in(honest, {"1.1": STUDENT_SOLUTIONS["1.1"]})
    return root


def submission(base, tmp_path, name, functional_tail="", optim_tail="", solutions=None, init_tail=""):
    """A copy of the honest submission with code appended to its files (module-level cheats)."""
    sub = tmp_path / name
    shutil.copytree(base / "honest", sub)
    if solutions:
        fill_in(sub, solutions)
    for rel, tail in (("functional.py", functional_tail), ("optim.py", optim_tail),
                      ("__init__.py", init_tail)):
        if tail:
            path = sub / "minigan" / rel
            path.write_text(path.read_text() + "\n" + tail + "\n")
    return sub


def score(sub, tmp_path, **kw):
    kw.setdefault("exercises", EXERCISES)
    kw.setdefault("seed", 7)
    rep = grader.grade(sub, tmp_path / f"grades-{Path(sub).name}", **kw)
    return rep


@pytest.fixture(scope="module")
def baseline(base, tmp_path_factory):
    return score(base / "honest", tmp_path_factory.mktemp("baseline")).points


def _stat(pid):
    """(uid, parent pid, command line) of a process, or None when it is gone."""
    try:
        uid = os.stat(f"/proc/{pid}").st_uid
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        return uid, ppid, cmd
    except (OSError, ValueError, IndexError):
        return None


def leftover_processes(patience=5.0):
    """Orphans under the runners' uids: processes whose runner is gone.

    A runner another grader is running right now (tests running side by side)
    has a runner-uid or sandbox-launcher parent and does not count. Processes
    killed a moment ago may take a little while to leave /proc on a busy machine.
    """
    deadline = time.monotonic() + patience
    while True:
        found = _orphans()
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def _orphans():
    uids = range(sandbox.FIRST_UID, sandbox.FIRST_UID + sandbox.UID_COUNT)
    found = []
    for entry in os.listdir("/proc"):
        info = _stat(entry) if entry.isdigit() else None
        if info is None or info[0] not in uids:
            continue
        parent = _stat(info[1])
        if parent is not None and (parent[0] in uids
                                   or os.path.basename(parent[2]) in ("bwrap", "unshare", "setpriv")):
            continue
        found.append(entry)
    return found


# ------------------------------------------------------------------------ cheats


def test_neutralising_the_checks_through_sys_modules(base, tmp_path, baseline):
    cheat = """
import sys as _s
for _name, _mod in list(_s.modules.items()):
    if 'classroom' in _name or 'check' in _name or 'probe' in _name:
        for _attr in dir(_mod):
            _obj = getattr(_mod, _attr, None)
            for _m in ('run', 'judge', 'judge_cases', 'compare', 'expect'):
                try:
                    setattr(_obj, _m, lambda *a, **k: None)
                except Exception:
                    pass
"""
    rep = score(submission(base, tmp_path, "sysmodules", functional_tail=cheat), tmp_path)
    assert rep.points <= baseline


def test_writing_pass_into_the_result_files_and_exiting(base, tmp_path, baseline):
    cheat = """
import json as _j, os as _o, sys as _s
_out = _s.argv[2] if len(_s.argv) > 2 else '.'
try:
    _job = _j.load(open(_o.path.join(_s.argv[1], 'job.json')))
    _items = {i['key']: {c['suffix']: {'status': 'ok', 'value': {'k': 'none'}} for c in i['cases']}
              for i in _job['items']}
except Exception:
    _items = {}
for _name in ('results.json', 'result.json', 'grades.json'):
    try:
        _j.dump({'items': _items, 'done': True, 'checks': [{'status': 'pass'}], 'points': 99},
                open(_o.path.join(_out, _name), 'w'))
    except Exception:
        pass
_o._exit(0)
"""
    rep = score(submission(base, tmp_path, "resultfile", functional_tail=cheat), tmp_path)
    assert rep.points <= baseline


def test_patching_numpy_norm_to_zero(base, tmp_path, baseline):
    cheat = "import numpy as _np\n_np.linalg.norm = lambda *a, **k: 0.0\n_np.allclose = lambda *a, **k: True"
    rep = score(submission(base, tmp_path, "norm", functional_tail=cheat), tmp_path)
    assert rep.points <= baseline


@pytest.mark.skipif(BOX.name == "plain" and not BOX.separate_uid,
                    reason=f"needs a PID namespace or a uid of its own; here: {BOX.describe()}")
def test_a_daemon_that_outlives_the_grader_cannot_touch_the_report(base, tmp_path, baseline):
    out = tmp_path / "grades-daemon"
    marker = tmp_path / "daemon-was-here"
    cheat = f"""
import os as _o, time as _t
if _o.fork() == 0:
    _o.setsid()
    if _o.fork() == 0:
        _t.sleep(2)
        for _p in ({str(out / 'grades.json')!r}, {str(out / 'report.md')!r}, {str(marker)!r}):
            try:
                open(_p, 'w').write('{{"points": 99}}')
            except Exception:
                pass
        _o._exit(0)
    _o._exit(0)
"""
    sub = submission(base, tmp_path, "daemon", functional_tail=cheat)
    rep = grader.grade(sub, out, exercises=EXERCISES, seed=7)
    before = (out / "grades.json").read_text()
    time.sleep(3)
    assert rep.points <= baseline
    assert (out / "grades.json").read_text() == before and not marker.exists()
    assert json.loads(before)["points"] == rep.points
    assert not leftover_processes()
    assert not list(sub.rglob("grades*")) and not list(sub.rglob("report.md")), "written into the submission"


@isolated
def test_calling_the_teachers_reference_code(base, tmp_path, baseline):
    """Found through the spec, the teacher's venv or a known path: none of it is visible."""
    cheat = f"""
def dense_backward(dout, cache, need_dx=True, need_param_grads=True):
    import importlib.util, glob, sys
    places = [{str(REPO / 'minigan' / 'functional.py')!r}, '/work/*/minigan/functional.py',
              '/work/*/.venv/lib/*/site-packages/minigan/functional.py',
              sys.base_prefix + '/lib/*/site-packages/minigan/functional.py']
    for path in [p for pattern in places for p in glob.glob(pattern)]:
        if path.startswith('/sandbox'):
            continue
        spec = importlib.util.spec_from_file_location('_ref', path)
        ref = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(ref)
        return ref.dense_backward(dout, cache, need_dx=need_dx, need_param_grads=need_param_grads)
    raise NotImplementedError("Exercise 1.2: no reference found")
"""
    rep = score(submission(base, tmp_path, "reference", functional_tail=cheat), tmp_path)
    assert rep.points <= baseline
    assert rep.exercise("1.2").points == 0


def test_reading_the_answers_from_the_fixtures_file(base, tmp_path, baseline):
    cheat = """
def dense_backward(dout, cache, need_dx=True, need_param_grads=True):
    import glob, os
    import numpy as np
    here = os.path.dirname(__file__)
    for path in glob.glob(os.path.join(here, '**', '*.npz'), recursive=True):
        data = np.load(path)
        for k in data.files:
            if k.endswith('__dout') and data[k].shape == dout.shape and np.allclose(data[k], dout):
                key = k[:-len('__dout')]
                return data[key + '__num_dx'], data[key + '__num_dW'], data[key + '__num_db']
    raise NotImplementedError("Exercise 1.2: no answer found")
"""
    sub = submission(base, tmp_path, "fixtures", functional_tail=cheat)
    # It fools the student's own `check` (the visible fixtures ship with the release) ...
    visible = grader.check(sub, exercises=["1.2"])
    assert visible.exercise("1.2").points > 0
    # ... but grade draws fresh inputs: nothing to look up.
    rep = score(sub, tmp_path)
    assert rep.points <= baseline and rep.exercise("1.2").points == 0


def test_editing_the_students_own_release_manifest(base, tmp_path, baseline):
    sub = submission(base, tmp_path, "manifest")
    path = sub / "minigan" / "classroom" / "release.json"
    man = json.loads(path.read_text())
    for e in man["exercises"]:
        e["released"] = e["id"] == "1.1"
    path.write_text(json.dumps(man))
    teacher = base / "fresh.manifest.json"
    honest = grader.grade(base / "honest", tmp_path / "h", manifest=teacher, seed=7)
    cheat = grader.grade(sub, tmp_path / "c", manifest=teacher, seed=7)
    assert cheat.max_points == honest.max_points and cheat.points <= honest.points
    assert [e.id for e in cheat.exercises] == [e.id for e in honest.exercises]


@isolated
def test_a_spy_cannot_copy_hidden_checks_or_reference_code_into_its_feedback(base, tmp_path):
    """It reads every file it can reach and raises with the contents: the feedback holds none."""
    cheat = f"""
def _spy():
    import glob, os
    found = []
    for pattern in ({str(REPO / 'minigan' / 'classroom' / 'hidden_checks.py')!r},
                    '/work/*/minigan/classroom/hidden_checks.py', {str(REPO / 'minigan' / '*.py')!r},
                    os.path.join(os.path.dirname(__file__), '*.py')):
        for path in glob.glob(pattern, recursive=True):
            try:
                found.append(open(path).read())
            except Exception:
                pass
    raise RuntimeError("SPY " + " ".join(found)[:5000])


def dense_backward(dout, cache, need_dx=True, need_param_grads=True):
    _spy()


def leaky_relu_backward(dout, cache):
    _spy()
"""
    sub = submission(base, tmp_path, "spy", functional_tail=cheat)
    out = tmp_path / "grades-spy"
    grader.grade(sub, out, exercises=["1.2", "1.3", "4.1"], seed=7)
    hidden_src = (REPO / "minigan" / "classroom" / "hidden_checks.py").read_text()
    hidden_names = [ln.split("class ")[1].split("(")[0] for ln in hidden_src.splitlines()
                    if ln.startswith("class ")]
    feedback = (out / "feedback.md").read_text()
    teacher = (out / "report.md").read_text() + (out / "grades.json").read_text()
    for text in (feedback, teacher):
        assert not any(name in text for name in hidden_names)
        assert "_minigan_classroom" not in text and "def judge" not in text
    # The reference solutions (substituted for 4.1's second run) are quoted nowhere.
    ref = (REPO / "minigan" / "functional.py").read_text()
    for region in markers.parse_text(ref, "minigan/functional.py"):
        body = [ln.strip() for ln in ref.splitlines()[region.begin: region.end - 1]
                if len(ln.strip()) > 20 and not ln.strip().startswith("#")]
        assert not any(line in teacher for line in body), region.exercise


def test_hidden_checks_stay_out_of_the_student_feedback(base, tmp_path):
    sub = submission(base, tmp_path, "wrong", solutions={
        "1.2": STUDENT_SOLUTIONS["1.2"].replace("dW = x.T @ dout", "dW = x.T @ dout * 1.5")})
    out = tmp_path / "g"
    grader.grade(sub, out, exercises=["1.2"], seed=7)
    feedback = (out / "feedback.md").read_text()
    teacher = (out / "report.md").read_text()
    assert "square W and a batch of one" in teacher          # the teacher sees the hidden check
    assert "square W and a batch of one" not in feedback     # the student does not
    assert "hidden checks:" in feedback and "expected" not in feedback.split("hidden checks:")[1]


# ---------------------------------------------------------------------- runaways


def test_an_infinite_loop_at_import_times_out(base, tmp_path, baseline):
    sub = submission(base, tmp_path, "loop", functional_tail="while True:\n    pass")
    started = time.perf_counter()
    rep = score(sub, tmp_path, timeout=3, jobs=2)
    assert time.perf_counter() - started < 30
    assert rep.points <= baseline
    assert rep.exercise("1.2").status == "timed out"
    assert "time limit of 3 s" in " ".join(rep.exercise("1.2").feedback + rep.exercise("1.2").notes)
    assert not leftover_processes()


def test_a_print_flood_is_cut_at_the_output_limit(base, tmp_path, baseline):
    sub = submission(base, tmp_path, "flood", functional_tail="while True:\n    print('x' * 10000)")
    started = time.perf_counter()
    rep = score(sub, tmp_path, timeout=10)
    assert time.perf_counter() - started < 40
    assert rep.points <= baseline
    text = " ".join(rep.exercise("1.2").feedback)
    assert "output limit" in text, text


def test_a_huge_allocation_fails_inside_the_limit(base, tmp_path, baseline):
    cheat = "import numpy as _np\n_big = _np.ones(3 * 2**30 // 8)\n_big[::4096] = 2"
    rep = score(submission(base, tmp_path, "memory", functional_tail=cheat), tmp_path)
    assert rep.points <= baseline
    assert "MemoryError" in " ".join(rep.exercise("1.2").feedback)


def test_a_fork_bomb_is_capped_and_cleaned_up(base, tmp_path, baseline):
    cheat = """
import os as _o, time as _t
for _ in range(500):
    try:
        if _o.fork() == 0:
            _t.sleep(60)
            _o._exit(0)
    except OSError:
        break
"""
    started = time.perf_counter()
    rep = score(submission(base, tmp_path, "forks", functional_tail=cheat), tmp_path, timeout=5)
    assert time.perf_counter() - started < 60
    assert rep.points <= baseline
    assert not leftover_processes()


def test_nothing_is_written_into_the_submission(base, tmp_path):
    sub = submission(base, tmp_path, "clean")
    before = sorted(p.relative_to(sub).as_posix() for p in sub.rglob("*"))
    score(sub, tmp_path)
    assert sorted(p.relative_to(sub).as_posix() for p in sub.rglob("*")) == before


def test_a_submission_that_links_to_the_teachers_copy_is_refused(base, tmp_path):
    sub = tmp_path / "link"
    sub.mkdir()
    (sub / "minigan").symlink_to(REPO / "minigan")
    with pytest.raises(grader.GraderError, match="symbolic link"):
        grader.grade(sub, tmp_path / "g")
    (tmp_path / "class").mkdir()
    (tmp_path / "class" / "eve").symlink_to(REPO)
    shutil.copytree(base / "honest", tmp_path / "class" / "honest")
    from minigan.classroom import batch

    book = batch.grade_class(tmp_path / "class", tmp_path / "out", exercises=EXERCISES, seed=7)
    rows = dict(book.rows)
    assert isinstance(rows["eve"], str) and "symbolic link" in rows["eve"]
    # files linked inside a package are not followed either
    sub2 = tmp_path / "filelink"
    shutil.copytree(base / "honest", sub2)
    target = sub2 / "minigan" / "functional.py"
    target.unlink()
    target.symlink_to(REPO / "minigan" / "functional.py")
    rep = grader.grade(sub2, tmp_path / "g2", exercises=EXERCISES, seed=7)
    assert rep.points == 0


def test_malformed_runner_output_cannot_crash_the_grader(base, tmp_path, baseline):
    """Deeply nested JSON, a huge array description, a FIFO: the grader reads data, defensively."""
    cheat = """
import os as _o, sys as _s
_out = _s.argv[2]
open(_o.path.join(_out, 'results.json'), 'w').write('[' * 100000 + ']' * 100000)
try:
    _o.mkfifo(_o.path.join(_out, 'progress.json.x'))
except Exception:
    pass
_o._exit(0)
"""
    rep = score(submission(base, tmp_path, "bomb", functional_tail=cheat), tmp_path)
    assert rep.points <= baseline


def test_a_formula_as_a_folder_name_stays_text_in_the_gradebook(base, tmp_path):
    from minigan.classroom import batch

    (tmp_path / "class").mkdir()
    shutil.copytree(base / "honest", tmp_path / "class" / "=HYPERLINK(1)")
    book = batch.grade_class(tmp_path / "class", tmp_path / "out", exercises=["1.1"], seed=7)
    assert book.csv_path.read_text().splitlines()[1].startswith("'=HYPERLINK(1)")


def test_messages_quoting_reference_code_are_withheld():
    """What a runner could read of substituted reference code never reaches a report verbatim."""
    from minigan.classroom import plan as plan_mod
    from minigan.classroom.report import Redactor

    scan = markers.scan(REPO)
    redactor = Redactor(plan_mod._secret_texts(scan, REPO))
    ref = (REPO / "minigan" / "functional.py").read_text()
    region = next(r for r in scan["1.2"].regions if r.path == "minigan/functional.py")
    leaked = "\n".join(ref.splitlines()[region.begin: region.end - 1])
    assert "withheld" in redactor.clean("RuntimeError: LEAK " + leaked)
    hidden = (REPO / "minigan" / "classroom" / "hidden_checks.py").read_text()
    assert "withheld" in redactor.clean("x" + hidden[2000:2600])
    assert redactor.clean("ValueError: shapes (4,5) and (3,5) not aligned") == \
        "ValueError: shapes (4,5) and (3,5) not aligned"


def test_source_that_breaks_the_parser_costs_only_its_file(base, tmp_path, baseline):
    """The grader parses (never runs) student files to substitute reference code: a file that
    overflows the parser's recursion must not take the grader down."""
    sub = submission(base, tmp_path, "deep", optim_tail="x = " + "-" * 200000 + "1")
    rep = score(sub, tmp_path)
    assert rep.points <= baseline and rep.exercise("3.2").points == 0


def test_garbage_result_arrays_cannot_crash_the_grader(base, tmp_path, baseline):
    cheat = """
import json as _j, os as _o, sys as _s
_job = _j.load(open(_o.path.join(_s.argv[1], 'job.json')))
_items = {i['key']: {c['suffix']: {'status': 'ok', 'value': {'k': 'array'}} for c in i['cases']}
          for i in _job['items']}
_j.dump({'items': _items, 'done': True}, open(_o.path.join(_s.argv[2], 'results.json'), 'w'))
open(_o.path.join(_s.argv[2], 'results.npz'), 'wb').write(b'PK\\x03\\x04' + b'\\xff' * 5000)
_o._exit(0)
"""
    rep = score(submission(base, tmp_path, "garbage", functional_tail=cheat), tmp_path)
    assert rep.points <= baseline


def test_links_in_a_submission_are_not_copied_for_the_runner(base, tmp_path):
    """A symbolic or hard link could make the grader copy a teacher's file into the runner's view."""
    from minigan.classroom.runjob import copy_package

    secret = tmp_path / "teacher_secret.py"
    secret.write_text("ANSWER = 42\n")
    sub = submission(base, tmp_path, "links")
    (sub / "minigan" / "soft.py").symlink_to(secret)
    os.link(secret, sub / "minigan" / "hard.py")
    copy_package(sub, tmp_path / "copy")
    copied = {p.name for p in (tmp_path / "copy" / "minigan").iterdir()}
    assert "functional.py" in copied and not {"soft.py", "hard.py"} & copied
