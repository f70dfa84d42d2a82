"""minigan.train: fit, its callbacks, Ctrl-C at a step boundary, the divergence guard."""

from __future__ import annotations

import math
import os
import signal

import numpy as np
import pytest

from minigan.checkpoint import load_checkpoint
from minigan.data import ToySampler, ring8
from minigan.models import build_gan
from minigan.train import (
    Callback,
    Checkpoints,
    DivergenceError,
    DivergenceGuard,
    Frames,
    GradNorms,
    ProgressBar,
    check_finite,
    deferred_interrupts,
    fit,
    interrupted,
)

CONFIG = {"latent_dim": 2, "data_dim": 2, "g_hidden": [8], "d_hidden": [8], "lr_g": 1e-3,
          "lr_d": 2e-3}


def small_gan(seed=0, **overrides):
    return build_gan({**CONFIG, **overrides}, backend="numpy", seed=seed)


def toy_batches(seed=0, batch_size=16):
    return ToySampler(ring8(), batch_size=batch_size, rng=seed, backend="numpy")


def weights(gan):
    return {f"{who}/{k}": v.copy() for who, model in (("G", gan.G), ("D", gan.D))
            for k, v in model.state_dict().items()}


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)


class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_start(self, gan, steps):
        self.calls.append(("start", gan.step, steps))

    def on_step(self, gan, record):
        self.calls.append(("step", gan.step, record["step"]))

    def on_end(self, gan):
        self.calls.append(("end", gan.step))


# ------------------------------------------------------------------------ the loop


def test_fit_is_the_plain_loop_with_the_schedule():
    """fit == setting the scheduled rates and calling train_step by hand, bit for bit."""
    schedule = lambda step: 1.0 / (1 + step)  # noqa: E731
    a, b = small_gan(), small_gan()
    history = fit(a, toy_batches(), 6, schedule=schedule)
    data = toy_batches()
    for step in range(6):
        b.g_optimizer.lr, b.d_optimizer.lr = 1e-3 * schedule(step), 2e-3 * schedule(step)
        b.train_step(next(data))
    assert_same_weights(a, b)
    assert history is a.history and len(history.records) == 6
    np.testing.assert_allclose(history["lr_g"], [1e-3 / (1 + s) for s in range(6)])
    np.testing.assert_allclose(history["lr_d"], [2e-3 / (1 + s) for s in range(6)])


def test_steps_is_a_total_so_a_second_fit_continues():
    gan, batches = small_gan(), toy_batches()
    fit(gan, batches, 3)
    fit(gan, batches, 5)
    assert gan.step == 5 and [r["step"] for r in gan.history.records] == [1, 2, 3, 4, 5]
    fit(gan, batches, 5)  # nothing left to do
    assert gan.step == 5
    straight = small_gan()
    fit(straight, toy_batches(), 5)
    assert_same_weights(gan, straight)


def test_without_a_schedule_the_rates_stay_and_are_recorded():
    gan = small_gan()
    fit(gan, toy_batches(), 2)
    assert gan.g_optimizer.lr == 1e-3 and gan.d_optimizer.lr == 2e-3
    assert list(gan.history["lr_g"]) == [1e-3, 1e-3]


def test_base_lrs_for_a_resumed_scheduled_run(tmp_path):
    """A checkpoint's optimisers hold the last scheduled rates: base_lrs gives the
    schedule its base, and the resumed run matches the straight one."""
    schedule = lambda step: 0.5 ** step  # noqa: E731
    straight = small_gan()
    fit(straight, toy_batches(), 6, schedule=schedule)
    first, batches = small_gan(), toy_batches()
    fit(first, batches, 3, schedule=schedule)
    from minigan.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "c.npz", first, CONFIG, {"data": batches.state_dict()})
    gan, _, extra = load_checkpoint(tmp_path / "c.npz")
    assert gan.g_optimizer.lr == 1e-3 * 0.25  # the last step's scheduled rate
    batches = toy_batches(seed=5)
    batches.load_state_dict(extra["data"])
    fit(gan, batches, 6, schedule=schedule, base_lrs=(1e-3, 2e-3))
    assert_same_weights(gan, straight)
    assert list(gan.history["lr_g"]) == list(straight.history["lr_g"])


def test_fit_stops_when_the_batches_run_out():
    gan = small_gan()
    fit(gan, [ring8().sample(16, 0), ring8().sample(16, 1)], 10)
    assert gan.step == 2


def test_callbacks_are_called_in_order_and_on_end_always():
    gan, rec = small_gan(), Recorder()
    fit(gan, toy_batches(), 2, callbacks=[rec, object()])  # hooks are optional
    assert rec.calls == [("start", 0, 2), ("step", 1, 1), ("step", 2, 2), ("end", 2)]

    class Boom(Callback):
        def on_step(self, gan, record):
            raise RuntimeError("boom")

    rec = Recorder()
    with pytest.raises(RuntimeError, match="boom"):
        fit(gan, toy_batches(), 5, callbacks=[rec, Boom()])
    assert rec.calls[-1] == ("end", 3)


def test_callbacks_may_add_columns_to_the_history():
    class Double(Callback):
        def on_step(self, gan, record):
            record["twice_g_loss"] = 2 * record["g_loss"]

    gan = small_gan()
    fit(gan, toy_batches(), 3, callbacks=[Double()])
    np.testing.assert_array_equal(gan.history["twice_g_loss"], 2 * gan.history["g_loss"])


def test_d_steps_takes_lists_of_batches():
    gan = small_gan(d_steps=2)
    data = toy_batches()
    fit(gan, ([next(data), next(data)] for _ in range(100)), 3)
    assert gan.step == 3


# ------------------------------------------------------------------------ Ctrl-C


def test_ctrl_c_during_a_step_stops_after_it(monkeypatch):
    """SIGINT in the middle of a step (between D's and G's updates): the step
    completes, fit raises KeyboardInterrupt at the boundary, and the run from
    there equals an uninterrupted one."""
    gan = small_gan()
    original = type(gan).generator_step

    def interrupted_generator_step(self, fake):
        if self.step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # arrives before G's update
        return original(self, fake)

    monkeypatch.setattr(type(gan), "generator_step", interrupted_generator_step)
    rec, batches = Recorder(), toy_batches()
    with pytest.raises(KeyboardInterrupt):
        fit(gan, batches, 10, callbacks=[rec])
    assert gan.step == 3 and len(gan.history.records) == 3
    assert rec.calls[-1] == ("end", 3)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    monkeypatch.undo()
    fit(gan, batches, 6)
    straight = small_gan()
    fit(straight, toy_batches(), 6)
    assert_same_weights(gan, straight)


def test_deferred_interrupts_hold_ctrl_c_until_the_block_ends():
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts():
            with deferred_interrupts():  # nested: one shared flag
                os.kill(os.getpid(), signal.SIGINT)
                steps.append(interrupted())
            steps.append("after the inner block")
    assert steps == [True, "after the inner block"]
    assert not interrupted()
    with deferred_interrupts():  # nothing pressed: nothing raised
        pass


def test_ctrl_c_before_fit_starts_runs_no_step():
    gan = small_gan()
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            fit(gan, toy_batches(), 5)
    assert gan.step == 0


# ----------------------------------------------------------------- the callbacks


def test_check_finite():
    gan = small_gan()
    check_finite({"step": 3, "d_loss": 1.0, "g_loss": 0.5}, gan)
    with pytest.raises(DivergenceError, match=r"step 4: g_loss=nan"):
        check_finite({"step": 4, "d_loss": 1.0, "g_loss": float("nan")})
    with pytest.raises(DivergenceError, match="d_loss=inf"):
        check_finite({"step": 4, "d_loss": float("inf"), "g_loss": 1.0})
    gan.D.parameters()[0][0][0, 0] = np.nan
    with pytest.raises(DivergenceError, match="D's parameter '0.W'"):
        check_finite({"step": 5, "d_loss": 1.0, "g_loss": 1.0}, gan)


def test_divergence_guard_stops_at_the_first_nan_loss():
    gan = small_gan()
    data = toy_batches()
    batches = (next(data) if i != 3 else np.full((16, 2), np.nan, np.float32)
               for i in range(100))
    with pytest.raises(DivergenceError, match="diverged at step 4"):
        fit(gan, batches, 10, callbacks=[DivergenceGuard()])
    assert gan.step == 4


def test_grad_norms_are_the_norms_of_the_last_gradients():
    gan = small_gan()
    fit(gan, toy_batches(), 2, callbacks=[GradNorms()])
    record = gan.history.records[-1]
    for who, model in (("d", gan.D), ("g", gan.G)):
        expected = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum())
                                 for _, g in model.parameters()))
        assert record[f"{who}_grad_norm"] == pytest.approx(expected, rel=1e-5)
    assert "d_grad_norm" in gan.history and len(gan.history["g_grad_norm"]) == 2


def test_checkpoints_every_n_steps_and_never_nan_weights(tmp_path):
    path = tmp_path / "ckpt.npz"
    saver = Checkpoints(path, CONFIG, every=2, extra=lambda: {"note": "hi"})
    gan = small_gan()
    fit(gan, toy_batches(), 5, callbacks=[saver])
    assert saver.last_saved == 4
    saved, config, extra = load_checkpoint(path)
    assert saved.step == 4 and config == CONFIG and extra == {"note": "hi"}

    class PoisonG(Callback):  # finite losses, NaN weights after step 6
        def on_step(self, gan, record):
            if gan.step == 6:
                gan.G.parameters()[0][0][...] = np.nan

    with pytest.raises(DivergenceError, match="G's parameter"):
        fit(gan, toy_batches(), 10, callbacks=[PoisonG(), saver])
    assert saver.last_saved == 4 and load_checkpoint(path).gan.step == 4


def test_progress_lines_every_tenth_with_time_left(capsys):
    fit(small_gan(), toy_batches(), 20, callbacks=[ProgressBar(lines=True)])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("step  2/20") and lines[-1].startswith("step 20/20")
    assert "D(G(z))" in lines[0] and "s left)" in lines[0]


def test_progress_bar_is_tqdm(capsys):
    fit(small_gan(), toy_batches(), 20, callbacks=[ProgressBar(lines=False)])
    err = capsys.readouterr().err
    assert "20/20" in err and ("step/s" in err or "s/step" in err)


def test_frames_at_step_0_and_every_n_and_back_from_a_checkpoint():
    gan = small_gan()
    frames = Frames(ring8(), every=3, seed=1)
    fit(gan, toy_batches(), 7, callbacks=[frames])
    assert [f["step"] for f in frames.frames] == [0, 3, 6]
    f = frames.frames[-1]
    assert f["fake"].shape == (500, 2) and f["d_grid"].shape == (60, 60)
    assert f["lim"] == ring8().plot_lim and f["info"]["g_loss"] == gan.history["g_loss"][5]
    state = frames.state_dict()
    again = Frames(ring8(), every=3, seed=1)
    again.load_state_dict(state, gan)
    assert [f["step"] for f in again.frames] == [0, 3, 6]
    for a, b in zip(frames.frames, again.frames):
        np.testing.assert_array_equal(a["fake"], b["fake"])
        np.testing.assert_array_equal(a["grid_y"], b["grid_y"])
        np.testing.assert_allclose(a["d_grid"], b["d_grid"], rtol=1e-6)
    # a resumed run does not record step 0 again
    fit(gan, toy_batches(), 9, callbacks=[again])
    assert [f["step"] for f in again.frames] == [0, 3, 6, 9]


def test_frames_of_1d_data_carry_the_latent_codes():
    from minigan.data import gaussian1d

    gan = build_gan({"latent_dim": 1, "data_dim": 1, "g_hidden": [4], "d_hidden": [4]},
                    backend="numpy", seed=0)
    frames = Frames(gaussian1d(), every=2, seed=0)
    fit(gan, ToySampler(gaussian1d(), 8, rng=0, backend="numpy"), 2, callbacks=[frames])
    assert [f["step"] for f in frames.frames] == [0, 2]
    assert frames.frames[0]["z"].shape == (500, 1)
    again = Frames(gaussian1d(), every=2, seed=0)
    again.load_state_dict(frames.state_dict(), gan)
    np.testing.assert_array_equal(again.frames[1]["z"], frames.frames[1]["z"])
