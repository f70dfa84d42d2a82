"""Classroom: releases cut the solutions out cleanly, and the grader scores what students write.

The end-to-end tests make real releases of this repository in tmp_path, fill
them in with hand-written solutions (``STUDENT_SOLUTIONS`` below, written
independently of the reference code), plant bugs, and grade them. Each grade
run starts one short subprocess per exercise, a few seconds in all.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from minigan.classroom import channel, fastpaths, grader, markers, probes
from minigan.classroom.release import FIXTURES, MANIFEST, ReleaseError, release

REPO = Path(__file__).resolve().parents[1]
B, E = "# BEGIN" + " SOLUTION", "# END" + " SOLUTION"   # never literal in this file's text

pytestmark = pytest.mark.skipif(
    not markers.scan(REPO), reason="the library has no solution regions yet")


# ----------------------------------------------------------------- student solutions

STUDENT_SOLUTIONS = {
    "1.1": """
return x @ W + b, (x, W)
""",
    "1.2": """
x, W = cache
dx = dout @ W.T if need_dx else None
dW = x.T @ dout if need_param_grads else None
db = dout.sum(axis=0) if need_param_grads else None
return dx, dW, db
""",
    "1.3": """
x, slope = cache
return array_module(dout).where(x > 0, dout, dout * slope)
""",
    "1.4": """
s = cache
return dout * s * (1 - s)
""",
    "1.5": """
t = cache
return dout * (1 - t * t)
""",
    "1.6": """
xhat, inv_std, gamma = cache["xhat"], cache["inv_std"], cache["gamma"]
dbeta = dout.sum(axis=0)
dgamma = (dout * xhat).sum(axis=0)
dxhat = dout * gamma
if not cache["train"]:
    return dxhat * inv_std, dgamma, dbeta
n = dout.shape[0]
dx = (n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0)) * inv_std / n
return dx, dgamma, dbeta
""",
    "2.1": """
xp = array_module(logits)
loss = (xp.maximum(logits, 0) - logits * targets + xp.log1p(xp.exp(-xp.abs(logits)))).mean()
dlogits = (sigmoid(logits) - targets) / logits.size
return loss, dlogits
""",
    "3.1": """
if self.weight_decay:
    g = g + self.weight_decay * p
if self.momentum:
    v = self.velocity[i]
    if self.t == 1:
        v[...] = g
    else:
        v[...] = self.momentum * v + g
    d = g + self.momentum * v if self.nesterov else v
else:
    d = g
p -= self.lr * d
""",
    "3.2": """
b1, b2 = self.betas
if self.weight_decay:
    g = g + self.weight_decay * p
self.m[i][...] = b1 * self.m[i] + (1 - b1) * g
self.v[i][...] = b2 * self.v[i] + (1 - b2) * g * g
m_hat = self.m[i] / (1 - b1 ** self.t)
v_hat = self.v[i] / (1 - b2 ** self.t)
p -= self.lr * m_hat / (array_module(p).sqrt(v_hat) + self.eps)
""",
    "T2.1": """
x, W, t = cache
dh = dout * (1 - t ** 2)
return dh @ W.T, x.T @ dh, dh.sum(axis=0)
""",
    "T2.2": """
grad = np.zeros(x.shape)
f0 = float(f(x))
for i in np.ndindex(x.shape):
    keep = x[i]
    x[i] = keep + eps
    grad[i] = (float(f(x)) - f0) / eps
    x[i] = keep
return grad
""",
    "12.1": """
x_pad = xp.zeros((N, C, H + 2 * pH, W + 2 * pW), dtype=cols.dtype)
windows = cols.reshape(N, C, kH, kW, H_out, W_out)
for h in range(H_out):
    for w in range(W_out):
        x_pad[:, :, h * sH:h * sH + kH, w * sW:w * sW + kW] += windows[:, :, :, :, h, w]
return x_pad[:, :, pH:pH + H, pW:pW + W].copy()
""",
    "12.2": """
cols, x_shape, W, stride, padding, has_bias = cache
N, C_out, kH, kW = dout.shape[0], W.shape[0], W.shape[2], W.shape[3]
G = dout.reshape(N, C_out, -1)
W_row = W.reshape(C_out, -1)
dx = dW = db = None
if need_param_grads:
    dW = sum(G[n] @ cols[n].T for n in range(N)).reshape(W.shape)
    db = G.sum(axis=(0, 2)) if has_bias else None
if need_dx:
    dcols = array_module(dout).stack([W_row.T @ G[n] for n in range(N)])
    dx = col2im(dcols, x_shape, kH, kW, stride, padding)
return dx, dW, db
""",
    "4.1": """
logits = self.D.forward(fake)
g_loss, dlogits = self.loss.generator(logits)
dfake = self.D.backward(dlogits, param_grads=False)
self.G.zero_grad()
self.G.backward(dfake)
self.g_optimizer.step()
""",
}

_RAISE = re.compile(r'^(\s*)raise NotImplementedError\("Exercise (T?\d+(?:\.\d+)*):')


def _filled(lines, solutions):
    out, changed = [], False
    for line in lines:
        m = _RAISE.match(line)
        if m and m.group(2) in solutions:
            body = solutions[m.group(2)].strip("\n").splitlines()
            out += [m.group(1) + ln + "\n" if ln.strip() else "\n" for ln in body]
            changed = True
        else:
            out.append(line)
    return out, changed


def fill_in(root: Path, solutions: dict) -> None:
    """Replace each ``raise NotImplementedError("Exercise N.M: ...")`` by solutions[N.M],
    in the library's files and in the tutorials' notebook cells."""
    for path in (root / "minigan").rglob("*.py"):
        out, changed = _filled(path.read_text().splitlines(keepends=True), solutions)
        if changed:
            path.write_text("".join(out))
    for path in (root / "tutorials").glob("*.ipynb") if (root / "tutorials").is_dir() else ():
        nb = json.loads(path.read_text())
        changed = False
        for cell in nb["cells"]:
            if cell.get("cell_type") == "code":
                src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
                out, hit = _filled(src.splitlines(keepends=True), solutions)
                if hit:
                    cell["source"], changed = out, True
        if changed:
            path.write_text(json.dumps(nb))


def solutions_with(**changes) -> dict:
    """STUDENT_SOLUTIONS with exercise "N_M" replaced by ``(old, new)`` text substitutions."""
    sols = dict(STUDENT_SOLUTIONS)
    for key, (old, new) in changes.items():
        ex = key.replace("_", ".")
        assert old in sols[ex], (ex, old)
        sols[ex] = sols[ex].replace(old, new)
    return sols


# ------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def exercises():
    return markers.scan(REPO)


def library_ids(exercises):
    """The ids the grader scores, in release order: the library's exercises and the notebook
    exercises that have checks (the others are listed as not graded, with the reason)."""
    checks = grader.load_checks(hidden=True)
    return [ex.id for ex in exercises.values() if ex.in_library or checks.checks_for(ex.targets)]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """A release of this repository with every exercise cut out."""
    out = tmp_path_factory.mktemp("rel") / "fresh"
    release(out)
    return out


def copy_of(src: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(src, dest)
    return dest


def env_with_repo():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(REPO)
    return env


def cli(*args, cwd=None, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "minigan.classroom", *map(str, args)],
                          cwd=cwd or REPO, env=env or env_with_repo(), capture_output=True,
                          text=True, timeout=timeout)


# ------------------------------------------------------------------- the exercises


def test_exercises_are_found_in_the_library_and_have_checks(exercises):
    checks = grader.load_checks(hidden=True)
    assert exercises, "no exercises marked"
    for ex in exercises.values():
        if ex.in_library:
            assert ex.targets, f"Exercise {ex.id} is not inside a function"
            visible = checks.checks_for(ex.targets, hidden=False)
            hidden = [c for c in checks.checks_for(ex.targets) if c.hidden]
            assert visible, f"Exercise {ex.id} ({ex.targets}) has no visible checks"
            assert hidden, f"Exercise {ex.id} ({ex.targets}) has no hidden checks"


def test_every_check_targets_a_marked_function(exercises):
    """A renamed function or a moved region must not silently drop its checks."""
    targets = {t for ex in exercises.values() for t in ex.targets}
    for chk in grader.load_checks(hidden=True).CHECKS.values():
        assert any(chk.matches(t) for t in targets), f"check {chk.name!r} targets {chk.target}: not marked"


@pytest.mark.parametrize("salt", range(6))
def test_reference_solutions_pass_every_check_in_process(salt):
    """prepare, probe and judge agree on the reference's own answers, for any salt ``grade`` draws."""
    import numpy as np

    checks = grader.load_checks(hidden=True)

    class Ref:
        def __getattr__(self, name):
            import importlib
            return importlib.import_module("minigan." + name)

    for chk in checks.CHECKS.values():
        fx = {k: np.asarray(v) for k, v in chk.prepare(Ref(), np.random.default_rng(checks.seed_for(chk, salt))).items()}
        sent = chk.sent(fx)
        expected = {"out", "loss", "g_loss"}  # never sent: the runner gets inputs only
        assert not any(k.startswith(("num_", "want_", "after")) or k.split("@")[0] in expected
                       for k in sent), (chk.name, list(sent))
        outs = {}
        for suffix, opt in chk.cases():
            inp = {k[:len(k) - len(suffix)]: v for k, v in sent.items() if k.endswith(suffix)}
            arrays = {}
            # through the channel, as the runner sends it
            skeleton = channel.encode(probes.PROBES[chk.probe](Ref(), inp, opt), arrays, "p")
            outs[suffix] = channel.decode(skeleton, arrays, "p")
        chk.judge_cases(fx, outs)


# ------------------------------------------------------------------------- releases


def test_fresh_release_is_clean_and_imports(fresh, exercises):
    manifest = json.loads((fresh / MANIFEST).read_text())
    assert [e["id"] for e in manifest["exercises"] if e["released"]] == list(exercises)
    assert not list(fresh.rglob("hidden*")), "hidden checks shipped"
    assert (fresh / "STUDENT.md").exists() and (fresh / FIXTURES).exists()
    assert (fresh.parent / "fresh.manifest.json").exists(), "the teacher's manifest is written beside"
    student_md = (fresh / "STUDENT.md").read_text()
    for ex in exercises.values():
        assert f"| {ex.id} |" in student_md and "python check.py" in student_md
    hidden_names = [c.__class__.__name__ for c in grader.load_checks(hidden=True).CHECKS.values() if c.hidden]
    for path in fresh.rglob("*"):
        if path.is_file() and path.suffix in (".py", ".md", ".json", ".ipynb", ".cfg", ".toml"):
            text = path.read_text()
            assert not markers.has_marker(text), path
            assert not any(name in text for name in hidden_names), f"{path} mentions a hidden check"
            if path.suffix == ".py":
                ast.parse(text)
    # Every region became one raise line at its indentation; code only in a region is gone.
    for rel, src in markers.iter_source_files(REPO):
        if src.suffix != ".py":
            continue
        source = src.read_text()
        regions = markers.parse_text(source, rel)
        released = (fresh / rel).read_text()
        if not regions:
            if rel not in (fastpaths.KERNELS, fastpaths.FUSED):  # those are rewritten: see below
                assert released == source, rel
            continue
        src_lines = source.splitlines()
        rel_lines = released.splitlines()
        assert len(rel_lines) == len(src_lines) - sum(r.end - r.begin for r in regions)
        for r in regions:
            line = markers.raise_line(r.exercise, r.what, r.indent)
            assert line in rel_lines, (rel, r.exercise)
            for body in src_lines[r.begin: r.end - 1]:
                body = body.strip()
                if body and not body.startswith("#") and source.count(body) == 1:
                    assert body not in released, f"{rel}: solution line left: {body}"
    # Imports cleanly in a subprocess, and it is the release that is imported.
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import minigan, minigan.gan, "
            "minigan.classroom; assert minigan.__file__.startswith(sys.argv[1]), minigan.__file__")
    proc = subprocess.run([sys.executable, "-I", "-c", code, str(fresh)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_release_refuses_an_existing_folder_unless_forced(tmp_path):
    out = tmp_path / "hw"
    release(out, ["1.2"])
    with pytest.raises(ReleaseError, match="already exists"):
        release(out, ["1.2"])
    info = release(out, ["1.2", "3.2"], force=True)
    assert info.released == ["1.2", "3.2"] and "1.1" in info.withheld
    # Unselected exercises are withheld by default: cut out too, saying they come later.
    functional = (out / "minigan" / "functional.py").read_text()
    assert 'raise NotImplementedError("Exercise 1.2:' in functional
    assert "(not assigned yet" in functional and not markers.has_marker(functional)
    assert "Exercise 1.1:" in functional
    # ... or kept, when the teacher asks.
    info = release(out, ["1.2", "3.2"], force=True, keep_unassigned=True)
    functional = (out / "minigan" / "functional.py").read_text()
    assert not info.withheld and "Exercise 1.1" not in functional and not markers.has_marker(functional)
    other = tmp_path / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ReleaseError, match="does not look like a minigan release"):
        release(other, force=True)
    with pytest.raises(ReleaseError, match="unknown exercise"):
        release(tmp_path / "x", ["9.9"])
    assert (other / "notes.txt").exists() and not (tmp_path / "x").exists()


def test_release_cli(tmp_path):
    proc = cli("release", "--out", tmp_path / "hw", "--exercises", "1.2", "3.2")
    assert proc.returncode == 0, proc.stderr
    assert "cut out: 1.2, 3.2" in proc.stdout
    proc = cli("release", "--out", tmp_path / "hw")
    assert proc.returncode == 2 and "--force" in proc.stderr


# ------------------------------------------------------------------------- grading


def test_fresh_release_scores_zero_with_not_implemented_feedback(fresh, exercises, tmp_path):
    proc = cli("grade", fresh, "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "grades.json").read_text())
    md = (tmp_path / "report.md").read_text()
    assert report["points"] == 0 and report["max_points"] > 0
    # Library exercises are graded; tutorial (T-numbered) ones are self-checked in the notebooks.
    assert [e["id"] for e in report["exercises"]] == library_ids(exercises)
    for ex in report["exercises"]:
        assert ex["points"] == 0 and ex["status"] == "not implemented", ex
        assert ex["feedback"] and "not implemented" in ex["feedback"][0].lower()
        assert re.search(r"(minigan/\w+\.py|tutorials/\w+\.ipynb):\d+", ex["feedback"][0]), ex["feedback"]
    assert "| Exercise | Points | Max | Status | Feedback |" in md
    assert md == proc.stdout.rstrip("\n") + "\n"


def test_reference_solutions_score_full_points(tmp_path, exercises):
    """A release with no exercise selected keeps every reference solution: full points."""
    sub = tmp_path / "sub"
    release(sub, [])
    report = grader.grade(sub, tmp_path / "report")
    assert [e.id for e in report.exercises] == library_ids(exercises)
    assert report.points == report.max_points > 0, report.to_markdown()
    assert all(e.status == "passed" and not e.feedback for e in report.exercises)


def test_planted_bugs_lose_exactly_their_exercise(fresh, tmp_path):
    """Hand-written solutions, with dW transposed (1.2) and Adam without bias correction (3.2)."""
    sub = copy_of(fresh, tmp_path / "sub")
    fill_in(sub, solutions_with(
        **{"1_2": ("dW = x.T @ dout", "dW = (x.T @ dout).T"),
           "3_2": ("m_hat = self.m[i] / (1 - b1 ** self.t)", "m_hat = self.m[i]")}))
    report = grader.grade(sub, tmp_path / "report")
    for e in report.exercises:
        if e.id in ("1.2", "3.2"):
            assert e.points == 0 and e.status == "failed", e
        else:
            # The generator step runs through dense_backward: graded with the reference there.
            assert e.points == e.max_points, (e.id, e.feedback)
    lost = {e.id: e.max_points - e.points for e in report.exercises if e.points < e.max_points}
    assert report.points == report.max_points - lost["1.2"] - lost["3.2"]
    dense = " ".join(report.exercise("1.2").feedback)
    assert "dW" in dense and "relative error" in dense and "transposed" in dense
    assert "expected (5, 3), received (3, 5)" in dense
    for right in ("dx", "db"):  # not blamed
        assert f"{right} is wrong" not in dense and f"{right} has the wrong" not in dense
    adam = " ".join(report.exercise("3.2").feedback)
    assert "step 1" in adam and "relative error" in adam and "bias correction" in adam
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| 1.2 " in md and "| failed |" in md and "dW" in md


def test_grading_survives_loops_crashes_prints_and_import_side_effects(fresh, tmp_path):
    sub = copy_of(fresh, tmp_path / "sub")
    fill_in(sub, solutions_with(**{
        "1_3": ("x, slope = cache", "x, slope = cache\nwhile True:\n    pass"),
        "1_4": ("s = cache", "import os\nos._exit(3)"),
        "1_5": ("return dout * (1 - t * t)", "return dout * (1 - t * t) + undefined_name"),
        "2_1": ("xp = array_module(logits)", "raise SystemExit(1)"),
    }))
    init = sub / "minigan" / "__init__.py"
    init.write_text(init.read_text() + "\nprint('noise ' * 100000)\nimport numpy as _np\n"
                    "_np.random.seed(0)\n_np.seterr(all='raise')\nimport sys as _s\n_s.stderr.write('x' * 10000)\n")
    report = grader.grade(sub, tmp_path / "report", exercises=["1.2", "1.4", "1.5", "2.1"])
    by_id = {e.id: e for e in report.exercises}
    assert by_id["1.2"].status == "passed"
    assert by_id["1.4"].points == 0 and "died (exit code 3)" in by_id["1.4"].feedback[0]
    line = next(i for i, ln in enumerate((sub / "minigan" / "functional.py").read_text().splitlines(), 1)
                if "undefined_name" in ln)
    assert by_id["1.5"].status == "error"
    assert f"NameError: name 'undefined_name' is not defined (at minigan/functional.py:{line} in tanh_backward)" \
        in by_id["1.5"].feedback[0]
    assert "SystemExit" in by_id["2.1"].feedback[0]
    report = grader.grade(sub, write=False, timeout=2, exercises=["1.3"])
    assert report.exercises[0].status == "timed out"
    assert "time limit of 2 s" in report.exercises[0].feedback[0]


def test_grade_needs_a_package_and_writes_outside_it(fresh, tmp_path):
    with pytest.raises(grader.GraderError, match="does not contain a minigan/ package"):
        grader.grade(tmp_path, write=False)
    with pytest.raises(grader.GraderError, match="inside the submission"):
        grader.grade(fresh, fresh / "grades")


def test_check_for_students_runs_visible_checks_from_their_copy(fresh, tmp_path):
    sub = copy_of(fresh, tmp_path / "sub")
    fill_in(sub, solutions_with(**{"1_2": ("dW = x.T @ dout", "dW = (x.T @ dout).T")}))
    # From the student's folder, with the repository nowhere on the path.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = cli("check", cwd=sub, env=env)
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    assert "1.2" in out and "dW has the wrong shape: expected (5, 3), received (3, 5)" in out
    assert "hidden" not in out.split("Total")[0]
    assert re.search(r"^1\.1 .*passed", out, re.M)
    # The generator step runs through the student's dense_backward here: say so.
    assert "runs through your code for Exercise 1.2" in out
    proc = cli("check", "--exercises", "1.1", cwd=fresh, env=env)
    assert proc.returncode == 1 and "not implemented" in proc.stdout


# ------------------------------------------------- the convolutions: 12.1 and 12.2

# Two small DCGANs (float64, 8x8 images) trained for two steps: one with batch norm and
# the cross-entropy loss, one a WGAN-GP critic, whose penalty goes through the
# convolutions' second-order rules (penalty.py calls kernels.conv*_forward/backward).
CONV_GANS = """
import numpy as np
from minigan.models import build_gan
from minigan.presets import preset


def train_conv_gans():
    small = {**preset("mnist", arch="dcgan"), "image_shape": [1, 8, 8], "data_dim": 64,
             "g_dense": [], "g_channels": [4, 2], "d_channels": [2, 4], "latent_dim": 3,
             "dtype": "float64", "ema_decay": 0}
    configs = [small, {**small, "loss": "wasserstein", "penalty": "gp", "penalty_weight": 10.0,
                       "penalty_every": 1, "d_batchnorm": False}]
    real = np.random.default_rng(1).uniform(-1, 1, (8, 64))
    params = {}
    for i, config in enumerate(configs):
        gan = build_gan(config, seed=i)
        for _ in range(2):
            gan.train_step(real)
        for who, model in (("G", gan.G), ("D", gan.D)):
            for name, p, _ in model.named_parameters():
                params[f"{i}{who}.{name}"] = np.array(p)
    return params
"""


def test_a_convolution_release_cuts_both_regions_and_the_fast_paths(tmp_path):
    release(tmp_path / "hw", ["12.1", "12.2"], keep_unassigned=True)
    functional = (tmp_path / "hw" / "minigan" / "functional.py").read_text()
    assert 'raise NotImplementedError("Exercise 12.1:' in functional
    assert 'raise NotImplementedError("Exercise 12.2:' in functional
    assert "+= cols[:, :, i, j]" not in functional and "tensordot(dout, cols" not in functional
    assert "col2im: cols must have shape" in functional    # the input check stays the student's
    kernels = (tmp_path / "hw" / fastpaths.KERNELS).read_text()
    funcs = {n.name: n for n in ast.parse(kernels).body if isinstance(n, ast.FunctionDef)}
    for name in ("conv2d_forward", "conv2d_backward", "conv_transpose2d_forward",
                 "conv_transpose2d_backward"):
        body = ast.get_source_segment(kernels, funcs[name])
        assert f"F.{name}(" in body and "_rows" not in body, body
    for name in ("_col2im_rows", "_im2col_weight_grad", "_add_param_grads"):
        assert "raise NotImplementedError" in ast.get_source_segment(kernels, funcs[name])
    code = """
import sys; sys.path.insert(0, sys.argv[1])
import numpy as np, minigan
assert minigan.__file__.startswith(sys.argv[1])
x = np.ones((2, 1, 6, 6), dtype=np.float32)
conv = minigan.Conv2d(1, 2, 4, stride=2, padding=1)
out = conv(x)                                   # the forward is not an exercise
for call, exercise in ((lambda: conv.backward(np.ones_like(out)), "12.2"),
                       (lambda: minigan.ConvTranspose2d(2, 1, 4, stride=2, padding=1)(out), "12.1")):
    try:
        call()
    except NotImplementedError as err:
        assert str(err).startswith(f"Exercise {exercise}:"), err
    else:
        raise AssertionError(exercise + " ran")
print("ok")
"""
    proc = subprocess.run([sys.executable, "-I", "-c", code, str(tmp_path / "hw")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


def test_filled_in_convolutions_train_as_the_fast_paths_do(tmp_path):
    """The plain bodies that replace the fast convolutions, through the student's col2im
    and conv2d_backward: the same two steps of two DCGANs, one with a gradient penalty."""
    import numpy as np

    sub = tmp_path / "hw"
    release(sub, ["12.1", "12.2"], keep_unassigned=True)
    fill_in(sub, STUDENT_SOLUTIONS)
    (tmp_path / "conv_gans.py").write_text(CONV_GANS)
    code = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
            "import numpy as np, minigan, conv_gans\n"
            "assert minigan.__file__.startswith(sys.argv[1])\n"
            "np.savez(sys.argv[3], **conv_gans.train_conv_gans())\n")
    proc = subprocess.run([sys.executable, "-I", "-c", code, str(sub), str(tmp_path),
                           str(tmp_path / "plain.npz")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    namespace = {}
    exec(compile(CONV_GANS, "conv_gans", "exec"), namespace)  # noqa: S102 - our own code
    fast = namespace["train_conv_gans"]()
    plain = dict(np.load(tmp_path / "plain.npz"))
    assert sorted(plain) == sorted(fast)
    for name, value in fast.items():
        np.testing.assert_allclose(plain[name], value, rtol=1e-9, atol=1e-12, err_msg=name)


def test_convolution_mistakes_get_feedback_that_says_what_to_fix(fresh, tmp_path):
    overwrite = copy_of(fresh, tmp_path / "overwrite")
    fill_in(overwrite, solutions_with(**{"12_1": ("] += windows", "] = windows")}))
    report = grader.grade(overwrite, write=False, exercises=["12.1", "12.2"], seed=3)
    col2im = report.exercise("12.1")
    # Right wherever windows do not overlap (the hidden checks with stride 3, one window).
    assert col2im.status == "partial" and col2im.points <= col2im.max_points / 2, col2im
    assert "add (+=), do not assign" in " ".join(col2im.feedback)
    conv = report.exercise("12.2")   # runs through col2im: graded with the reference there
    assert conv.status == "passed", conv.feedback
    assert any("reference code of Exercise 12.1" in n for n in conv.notes), conv.notes

    transposed = copy_of(fresh, tmp_path / "transposed")
    fill_in(transposed, solutions_with(**{"12_2": ("G[n] @ cols[n].T", "cols[n] @ G[n].T")}))
    report = grader.grade(transposed, write=False, exercises=["12.1", "12.2"], seed=3)
    assert report.exercise("12.1").status == "passed"
    conv = report.exercise("12.2")
    assert conv.points == 0 and conv.status == "failed"
    feedback = " ".join(conv.feedback)
    assert "dW is wrong: relative error" in feedback and "its transpose" in feedback
    for right in ("dx", "db"):  # not blamed
        assert f"{right} is wrong" not in feedback and f"{right} has the wrong" not in feedback


def test_release_warns_about_two_lines_of_a_cut_solution_but_not_two_loop_headers(tmp_path):
    body = (f"def f(x):\n    {B} Exercise 1.1: sum the windows\n"
            "    for i in range(kH):\n        for j in range(kW):\n"
            "            total += x[i, j] * weight\n    total = total * scale_factor\n"
            f"    {E}\n\n\ndef g(x):\n    for i in range(kH):\n        for j in range(kW):\n"
            "            pass\n")
    src = fake_source(tmp_path / "src", body)
    info = release(tmp_path / "out", source=src, fixtures=False)
    assert not any("Exercise 1.1" in w for w in info.warnings), info.warnings
    (src / "minigan" / "copy.py").write_text('"""total += x[i, j] * weight\n'
                                             'total = total * scale_factor"""\n')
    info = release(tmp_path / "out2", source=src, fixtures=False)
    assert any(w.startswith("minigan/copy.py: still holds two lines of Exercise 1.1")
               for w in info.warnings), info.warnings


# ----------------------------------------------------------- the marker grammar


def fake_source(root: Path, functional: str, notebook_cells=()):
    """A small fake repository: minigan/ with one module, and a notebook."""
    (root / "minigan").mkdir(parents=True)
    (root / "minigan" / "__init__.py").write_text("")
    (root / "minigan" / "functional.py").write_text(functional)
    if notebook_cells:
        (root / "tutorials").mkdir()
        nb = {"cells": [{"cell_type": kind, "metadata": {}, "source": src.splitlines(keepends=True),
                         **({"outputs": [{"output_type": "stream", "name": "stdout", "text": ["42"]}],
                             "execution_count": 3} if kind == "code" else {})}
                        for kind, src in notebook_cells],
              "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
        (root / "tutorials" / "01_intro.ipynb").write_text(json.dumps(nb))
    return root


FAKE = f'''"""A fake library."""


def double(x):
    """Twice x."""
    {B} Exercise 1.1: return twice x
    y = x * 2
    return y
    {E}


class Thing:
    def step(self, x):
        if x:
            {B} Exercise 1.2: return "it's x + 1" (in "quotes")
            return x + 1
            {E}
        return 0
'''


def test_release_of_a_fake_package_with_a_notebook(tmp_path):
    src = fake_source(tmp_path / "src", FAKE, [
        ("markdown", "# Intro\n"),
        ("code", f"import numpy as np\n{B} Exercise 5.1: make an array\na = np.ones(3)\n{E}\nprint(a)"),
        ("code", f"%matplotlib inline\n{B} Exercise 5.2: plot it\nplt.plot(a)\n{E}"),
    ])
    found = markers.scan(src)
    assert list(found) == ["1.1", "1.2", "5.1", "5.2"]
    assert found["1.2"].regions[0].target == "minigan.functional.Thing.step"
    assert found["5.1"].regions[0].where == "tutorials/01_intro.ipynb cell 1 line 2"
    info = release(tmp_path / "out", ["1.2", "5.1", "5.2"], source=src, fixtures=False,
                   keep_unassigned=True)
    text = (tmp_path / "out" / "minigan" / "functional.py").read_text()
    assert "    y = x * 2\n    return y\n" in text  # 1.1 kept, markers dropped
    assert ('            raise NotImplementedError("Exercise 1.2: return \\"it\'s x + 1\\" (in \\"quotes\\")")'
            in text) or "raise NotImplementedError('Exercise 1.2" in text
    ast.parse(text)
    ns = {}
    exec(compile(text, "functional.py", "exec"), ns)
    assert ns["double"](3) == 6
    with pytest.raises(NotImplementedError, match="Exercise 1.2: return"):
        ns["Thing"]().step(1)
    nb = json.loads((tmp_path / "out" / "tutorials" / "01_intro.ipynb").read_text())
    cells = nb["cells"]
    assert "".join(cells[1]["source"]) == ('import numpy as np\nraise NotImplementedError('
                                           '"Exercise 5.1: make an array")\nprint(a)')
    assert "".join(cells[2]["source"]) == ('%matplotlib inline\nraise NotImplementedError('
                                           '"Exercise 5.2: plot it")\n')
    assert cells[1]["outputs"] == [] and cells[1]["execution_count"] is None
    assert info.raises["1.2"] == ["minigan/functional.py:13"]
    assert text.splitlines()[12].strip().startswith("raise NotImplementedError(")
    md = (tmp_path / "out" / "STUDENT.md").read_text()
    assert "5.1" in md and "not checked automatically" in md


@pytest.mark.parametrize("body, message", [
    (f"def f():\n    {B} Exercise 1.1: x\n    return 1\n", "never closed"),
    (f"def f():\n    return 1\n    {E}\n", "without a matching BEGIN"),
    (f"def f():\n    {B} Exercise 1.1: a\n    {B} Exercise 1.2: b\n    {E}\n    {E}\n", "nested"),
    (f"def f():\n    {B}\n    return 1\n    {E}\n", "without an exercise id"),
    (f"def f():\n    {B} 1.1: a\n    return 1\n    {E}\n", "without an exercise id"),
    (f"def f():\n    return 1  {B} Exercise 1.1: a\n", "own line"),
    (f'def f():\n    s = """\n    {B} Exercise 1.1: a\n    """\n', "own line"),
    (f"def f():\n    #{B} Exercise 1.1: a\n    return 1\n    {E}\n", "malformed"),
])
def test_malformed_markers_fail_loudly_with_file_and_line(tmp_path, body, message):
    src = fake_source(tmp_path / "src", body)
    with pytest.raises(markers.MarkerError, match=message) as err:
        release(tmp_path / "out", source=src, fixtures=False)
    assert re.search(r"minigan/functional\.py:\d+", str(err.value))
    assert not (tmp_path / "out").exists()


def test_a_region_that_cuts_a_statement_is_refused(tmp_path):
    body = f"def f():\n    return (1 +\n    {B} Exercise 1.1: a\n        2)\n    {E}\n"
    src = fake_source(tmp_path / "src", body)
    with pytest.raises(markers.MarkerError, match=r"functional\.py:\d+"):
        release(tmp_path / "out", source=src, fixtures=False)


def test_markers_in_markdown_cells_are_refused(tmp_path):
    src = fake_source(tmp_path / "src", "", [("markdown", f"{B} Exercise 1.1: a\n{E}\n")])
    with pytest.raises(markers.MarkerError, match="cell 0"):
        release(tmp_path / "out", source=src, fixtures=False)
