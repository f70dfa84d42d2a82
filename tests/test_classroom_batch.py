"""Whole-class grading, failures that stay local, check and grade agreeing, releases that give
nothing away, and the sandbox's fallbacks."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minigan.classroom import batch, fastpaths, grader, markers, sandbox
from minigan.classroom.release import release

from test_classroom import STUDENT_SOLUTIONS, fill_in, solutions_with  # noqa: I001

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not markers.scan(REPO), reason="the library has no solution regions")


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    out = tmp_path_factory.mktemp("batch") / "hw"
    release(out)
    return out


def student(fresh, dest, solutions=None, edit=None):
    shutil.copytree(fresh, dest)
    if solutions:
        fill_in(dest, solutions)
    if edit:
        rel, old, new = edit
        path = dest / rel
        text = path.read_text()
        assert old in text, (rel, old)
        path.write_text(text.replace(old, new, 1))
    return dest


def test_a_class_is_graded_in_parallel_into_a_gradebook(fresh, tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    student(fresh, subs / "alice", STUDENT_SOLUTIONS)
    student(fresh, subs / "bob", solutions_with(**{"1_2": ("dW = x.T @ dout", "dW = (x.T @ dout).T")}))
    student(fresh, subs / "carol")
    student(fresh, subs / "dave", STUDENT_SOLUTIONS,
            edit=("minigan/functional.py", "def tanh_backward(dout, cache):\n",
                  "def tanh_backward(dout, cache):\n    while True:\n        pass\n"))
    (subs / "notes.txt").write_text("not a submission")
    (subs / "empty").mkdir()
    book = batch.grade_class(subs, tmp_path / "out", manifest=fresh.parent / "hw.manifest.json",
                             timeout=8, seed=3)
    rows = list(csv.reader(book.csv_path.open()))
    header = rows[0]
    assert header[0] == "student" and header[-1] == "total"
    assert header[1:-1] == [f"Exercise {e}" for e, _ in book.exercises]
    by_name = {r[0]: r for r in rows[1:]}
    assert set(by_name) == {"alice", "bob", "carol", "dave", "empty"}
    total = sum(m for _, m in book.exercises)
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert float(by_name["alice"][-1]) == total, summary
    assert 0 < float(by_name["bob"][-1]) < total and float(by_name["carol"][-1]) == 0, summary
    col = header.index("Exercise 1.5")
    assert float(by_name["dave"][col]) == 0 and float(by_name["dave"][-1]) == total - book.exercises[col - 1][1]
    assert float(by_name["empty"][-1]) == 0
    for name in ("alice", "bob", "carol", "dave"):
        assert (tmp_path / "out" / name / "feedback.md").exists()
        assert (tmp_path / "out" / name / "grades.json").exists()
    assert "timed out" in (tmp_path / "out" / "dave" / "feedback.md").read_text()
    assert "| alice |" in summary and "not graded" in summary


def test_the_cli_grades_a_class_folder(fresh, tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    student(fresh, subs / "s1", STUDENT_SOLUTIONS)
    student(fresh, subs / "s2")
    proc = subprocess.run([sys.executable, "-m", "minigan.classroom", "grade", str(subs),
                           "--out", str(tmp_path / "g"), "--exercises", "1.1", "1.2"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "| s1 | 4 | 5 | 9 |" in proc.stdout, proc.stdout
    assert (tmp_path / "g" / "gradebook.csv").read_text().splitlines()[1:] == ["s1,4,5,9", "s2,0,0,0"]


def test_a_syntax_error_costs_only_the_exercises_that_need_the_file(fresh, tmp_path):
    sub = student(fresh, tmp_path / "typo", STUDENT_SOLUTIONS,
                  edit=("minigan/optim.py", "class Adam(Optimizer):", "class Adam(Optimizer)"))
    graded = grader.grade(sub, tmp_path / "g", seed=1)
    checked = grader.check(sub)
    for rep in (graded, checked):
        lost = {e.id for e in rep.exercises if e.points < e.max_points}
        assert lost == {"3.1", "3.2"}, (rep.mode, lost)
        assert [(f.path, f.exercises) for f in rep.files] == [("minigan/optim.py", ["3.1", "3.2"])]
        assert "SyntaxError" in rep.files[0].problem
    assert "minigan/optim.py" in (tmp_path / "g" / "feedback.md").read_text()
    table = grader.render_table(checked)
    assert "Files that could not be imported" in table and "minigan/optim.py" in table
    # The student's own check.py works although `import minigan` is broken.
    proc = subprocess.run([sys.executable, "-I", "check.py", "--exercises", "1.1", "3.2"], cwd=sub,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert re.search(r"^1\.1 .*passed", proc.stdout, re.M) and "minigan/optim.py" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_check_and_grade_agree_on_a_consistent_cache_of_ones_own(fresh, tmp_path):
    """The student's dense layer keeps a dict as its cache: both pass, nothing substituted."""
    sols = dict(STUDENT_SOLUTIONS)
    sols["1.1"] = "return x @ W + b, {'input': x, 'weight': W}\n"
    sols["1.2"] = STUDENT_SOLUTIONS["1.2"].replace("x, W = cache", "x, W = cache['input'], cache['weight']")
    sub = student(fresh, tmp_path / "own", sols)
    checked = grader.check(sub, exercises=["1.1", "1.2", "4.1"])
    graded = grader.grade(sub, write=False, exercises=["1.1", "1.2", "4.1"], seed=2)
    for rep in (checked, graded):
        assert all(e.status == "passed" for e in rep.exercises), rep.to_markdown()
        assert not any(e.notes for e in rep.exercises)


def test_a_broken_dependency_is_replaced_and_the_feedback_says_so(fresh, tmp_path):
    sub = student(fresh, tmp_path / "dep", solutions_with(
        **{"1_2": ("dW = x.T @ dout", "dW = x.T @ dout * 2")}))
    graded = grader.grade(sub, write=False, exercises=["1.2", "4.1"], seed=2)
    gen = graded.exercise("4.1")
    assert gen.status == "passed"
    assert any("reference code of Exercise 1.2" in n for n in gen.notes)
    checked = grader.check(sub, exercises=["1.2", "4.1"])
    assert any("runs through your code for Exercise 1.2" in n for n in checked.exercise("4.1").notes)


# ------------------------------------------------------------------------ releases


LEAKS = {  # exercise -> text that would spell out its solution in a released file
    "1.2": ["x.T @ dout", "cublas.gemm", "dout @ W.T"],
    "1.3": ["dy * slope"],
    "1.4": ["(T)1 - s) * s"],
    "1.5": ["(T)1 - t * t"],
    "2.1": ["log1p(e_)", "(s_ - y) * inv_n"],
    "3.2": ["1 - b2 ** t", "one_minus_b1", "sqrt(v_hat)"],
    "12.1": ["+= prod.reshape", "_col2im_rows(d_rows", "_col2im_rows(x_rows"],
    "12.2": ["_im2col_weight_grad(d_rows", "grad_b += dout.sum(axis=(0, 2, 3))"],
}


def test_released_fast_paths_give_nothing_away(fresh):
    for rel in (fastpaths.KERNELS, fastpaths.FUSED):
        text = (fresh / rel).read_text()
        for ex, needles in LEAKS.items():
            for needle in needles:
                assert needle not in text, f"{rel} still holds {needle!r} (Exercise {ex})"


def test_a_filled_in_release_still_trains_with_its_plain_paths(fresh, tmp_path):
    sub = student(fresh, tmp_path / "full", STUDENT_SOLUTIONS)
    code = """
import sys; sys.path.insert(0, sys.argv[1])
import numpy as np, minigan
from minigan import gan, gan_losses, layers, optim
assert minigan.__file__.startswith(sys.argv[1])
rng = np.random.default_rng(0)
G = layers.Sequential(layers.Dense(2, 8), layers.LeakyReLU(0.2), layers.Dense(8, 2))
D = layers.Sequential(layers.Dense(2, 8), layers.LeakyReLU(0.2), layers.Dense(8, 1))
g = gan.GAN(G, D, 2, optim.Adam(G.parameters(), lr=1e-3), optim.Adam(D.parameters(), lr=1e-3))
before = [p.copy() for p, _ in G.parameters()]
for _ in range(3):
    g.train_step(rng.standard_normal((16, 2)).astype(np.float32)) if hasattr(g, 'train_step') else None
    g.generator_step(g.generate(rng.standard_normal((16, 2)).astype(np.float32)))
assert all(np.all(np.isfinite(p)) for p, _ in G.parameters())
assert any(not np.array_equal(a, p) for a, (p, _) in zip(before, G.parameters()))
print("ok")
"""
    proc = subprocess.run([sys.executable, "-I", "-c", code, str(sub)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr
    rep = grader.grade(sub, write=False, seed=5)
    assert rep.points == rep.max_points, rep.to_markdown()


def test_a_partial_release_withholds_and_says_which_tutorials_need_what(tmp_path):
    info = release(tmp_path / "hw1", ["1.1", "1.2"])
    assert "3.2" in info.withheld and "1.3" in info.withheld
    optim = (tmp_path / "hw1" / "minigan" / "optim.py").read_text()
    assert "Exercise 3.2: update p in place by Adam, with bias correction (not assigned yet" in optim
    assert "1 - b2 ** self.t" not in optim
    assert "sqrt(v_hat)" not in (tmp_path / "hw1" / fastpaths.KERNELS).read_text()
    student_md = (tmp_path / "hw1" / "STUDENT.md").read_text()
    assert "## Not assigned yet" in student_md
    assert any("04_optimisers_and_mnist" in n for n in info.needs)


# ------------------------------------------------------------------------- sandbox


def test_the_plain_fallback_grades_and_names_what_is_missing(fresh, tmp_path):
    box = sandbox.detect(allow=("plain",))
    assert box.missing and "setsid" in " ".join(box.missing)
    sub = student(fresh, tmp_path / "plain", STUDENT_SOLUTIONS)
    rep = grader.grade(sub, tmp_path / "g", exercises=["1.2", "3.2"], box=box, seed=1)
    assert rep.points == rep.max_points
    assert "Missing protections" in (tmp_path / "g" / "report.md").read_text()


def test_the_detected_sandbox_is_reported():
    box = sandbox.detect()
    text = box.describe()
    assert "resource limits" in text
    if box.name != "bwrap":
        pytest.skip(f"bubblewrap unavailable: {text}")
    assert not box.missing or not sandbox._is_root()


needs_uids = pytest.mark.skipif(
    not (sandbox._is_root() and shutil.which("setpriv")),
    reason="runner uids of their own need root and setpriv")


@needs_uids
def test_a_uid_whose_process_cap_is_taken_elsewhere_is_given_up(fresh, tmp_path, monkeypatch):
    """Another container on the same kernel may run its own grader's processes under
    the same uid number: invisible here, but they count against RLIMIT_NPROC, so the
    runner cannot even start. The grader must retry on another uid, not blame the
    student (a CI run once gave one student of four 0 points this way)."""
    import time

    sub = student(fresh, tmp_path / "s", STUDENT_SOLUTIONS)
    limits = sandbox.Limits(wall=60, processes=4)
    box = sandbox.detect()
    # as if in another container: not seen, and out of reach of the grader's kill
    monkeypatch.setattr(sandbox, "_uids_with_processes", set)
    monkeypatch.setattr(sandbox, "kill_uid", lambda uid: None)
    probe = sandbox.SlotPool(1)
    with probe.slot() as uid:
        pass
    del probe  # frees the lock: the grader's pool starts its search at the same uid
    monkeypatch.setattr(sandbox.random.SystemRandom, "randrange", lambda self, n: uid - sandbox.FIRST_UID)
    retired = []
    real_retire = sandbox.SlotPool.retire
    monkeypatch.setattr(sandbox.SlotPool, "retire",
                        lambda self, u: (retired.append(u), real_retire(self, u)))
    hogs = [subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                              "sleep", "60"]) for _ in range(limits.processes + 1)]
    try:
        deadline = time.monotonic() + 10
        while sandbox._process_uids().count(uid) <= limits.processes and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sandbox._process_uids().count(uid) > limits.processes   # the cap is taken
        rep = grader.grade(sub, write=False, exercises=["1.1"], jobs=1, seed=1, limits=limits,
                           box=box, substitute=False)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert rep.exercise("1.1").status == "passed", rep.to_markdown()
    assert retired == [uid]                  # given up once, and graded on another uid


def test_a_runner_that_never_starts_is_not_the_students_fault(fresh, tmp_path, monkeypatch):
    sub = student(fresh, tmp_path / "s", STUDENT_SOLUTIONS)
    real = sandbox.command

    def broken(*args, **kwargs):  # an interpreter that cannot start
        prefix, inside, sites = real(*args, **kwargs)
        return prefix[:-1] + ["/bin/sh", "-c", "echo 'cannot start' >&2; exit 126", "sh"], inside, sites

    monkeypatch.setattr(sandbox, "command", broken)
    rep = grader.grade(sub, write=False, exercises=["1.1"], jobs=1, seed=1)
    ex = rep.exercise("1.1")
    assert ex.points == 0 and ex.status == "error"
    text = " ".join(c.message for c in ex.checks)
    assert "could not start its runner" in text and "says nothing about your code" in text, text
    assert "cannot start" in text and "os._exit" not in text


def test_the_grader_never_imports_student_code(fresh, tmp_path):
    sub = student(fresh, tmp_path / "s", STUDENT_SOLUTIONS)
    grader.grade(sub, write=False, exercises=["1.2", "3.2", "4.1"], seed=1)
    inside = [name for name, mod in list(sys.modules.items())
              if str(getattr(mod, "__file__", "") or "").startswith(str(sub))]
    assert not inside, inside


def test_release_warns_about_files_git_does_not_track(tmp_path):
    src = tmp_path / "src"
    (src / "minigan").mkdir(parents=True)
    (src / "minigan" / "__init__.py").write_text("")
    B, E = "# BEGIN" + " SOLUTION", "# END" + " SOLUTION"
    (src / "minigan" / "functional.py").write_text(f"def f():\n    {B} Exercise 1.1: one\n    return 1\n    {E}\n")
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    run = lambda *a: subprocess.run(["git", "-C", str(src), *a], capture_output=True, check=True)  # noqa: E731
    run("init", "-q")
    run("add", "minigan")
    (src / "minigan" / "answers_backup.py").write_text("SECRET = 1\n")
    info = release(tmp_path / "out", source=src, fixtures=False)
    assert any("minigan/answers_backup.py" in w for w in info.warnings), info.warnings
    assert not any("functional.py" in w for w in info.warnings)


def test_notebook_exercises_are_graded_from_their_cells(fresh, tmp_path):
    central = STUDENT_SOLUTIONS["T2.2"].replace(
        "grad[i] = (float(f(x)) - f0) / eps",
        "plus = float(f(x))\n    x[i] = keep - eps\n    grad[i] = (plus - float(f(x))) / (2 * eps)")
    sub = student(fresh, tmp_path / "nb", dict(STUDENT_SOLUTIONS, **{"T2.2": central}))
    rep = grader.grade(sub, tmp_path / "g", exercises=["T2.1", "T2.2"], seed=4)
    assert rep.exercise("T2.1").status == "passed"
    t22 = " ".join(rep.exercise("T2.2").feedback)
    assert rep.exercise("T2.2").points == 0 and "central differences?" in t22
    graded = {e.id for e in rep.exercises}
    full = grader.grade(sub, write=False, seed=4)
    why = {i: w for i, _, w in full.ungraded}
    assert "T1.1" in why and "without checks" in why["T1.1"] and "T2.1" not in why
    assert graded == {"T2.1", "T2.2"}


def test_the_fast_path_table_names_what_exists():
    """A renamed kernel would silently ship: every name in FAST_PATHS must be found."""
    import ast

    kernels = (REPO / fastpaths.KERNELS).read_text()
    fused = (REPO / fastpaths.FUSED).read_text()
    k_funcs = {n.name for n in ast.parse(kernels).body if isinstance(n, ast.FunctionDef)}
    f_funcs = {n.name for n in ast.parse(fused).body if isinstance(n, ast.FunctionDef)}
    exercises = markers.scan(REPO)
    for ex, row in fastpaths.FAST_PATHS.items():
        assert ex in exercises, f"FAST_PATHS names Exercise {ex}, which is not marked"
        assert set(row.kernels or {}) <= k_funcs, (ex, set(row.kernels) - k_funcs)
        assert set(row.fused) <= f_funcs, (ex, set(row.fused) - f_funcs)
        for key in row.fused_kernels:
            assert f'"{key}": elementwise(' in fused, (ex, key)


def test_release_warns_about_tutorial_functions_that_look_like_a_cut_exercise(tmp_path):
    from test_classroom import B, E, fake_source

    src = fake_source(tmp_path / "src", f"def double(x):\n    {B} Exercise 1.1: twice x\n"
                                         f"    return 2 * x\n    {E}\n",
                      [("code", "def my_double(x):\n    return x + x\n"),
                       ("code", f"def helper(x):\n    {B} Exercise T1.1: a\n    return x\n    {E}\n")])
    info = release(tmp_path / "out", ["1.1"], source=src, fixtures=False)
    assert any("cell 0: my_double() looks like Exercise 1.1" in w for w in info.warnings), info.warnings
    info = release(tmp_path / "out2", ["T1.1"], source=src, fixtures=False, keep_unassigned=True)
    assert not any("looks like" in w for w in info.warnings), info.warnings


def test_loading_arrays_waits_for_the_ast_lock(tmp_path):
    """NumPy parses each .npy header with ast.literal_eval, which on CPython 3.11 must not
    run while another of the grader's threads parses a source (gh-106905: "AST constructor
    recursion depth mismatch", seen once in this suite): both hold one lock."""
    import threading

    import numpy as np

    from minigan.classroom import channel

    path = tmp_path / "a.npz"
    np.savez(path, a=np.arange(3))
    done = threading.Event()
    assert markers._PARSE_LOCK is channel.AST_LOCK
    with channel.AST_LOCK:
        t = threading.Thread(target=lambda: (channel.load_arrays(path, 1 << 20), done.set()))
        t.start()
        assert not done.wait(0.3)      # blocked while a parse holds the lock
    t.join(10)
    assert done.is_set()
