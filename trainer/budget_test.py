"""The time budget: the schedule's movable end, the plan, and the stop."""

import types

import keras
import numpy as np
import pytest

from trainer import budget


def _rate(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_warmup_then_cosine_ends_where_it_is_moved():
    schedule = budget.WarmupCosine(1e-3, warmup_steps=10, total_steps=100, alpha=0.01)
    assert _rate(schedule, 0) == 0.0 and _rate(schedule, 5) == pytest.approx(5e-4)
    assert _rate(schedule, 10) == pytest.approx(1e-3) and _rate(schedule, 100) == pytest.approx(1e-5)
    assert _rate(schedule, 55) == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5))  # half-way down the cosine
    schedule.set_total_steps(40)
    assert _rate(schedule, 25) == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5))
    assert _rate(schedule, 40) == pytest.approx(1e-5) and _rate(schedule, 90) == pytest.approx(1e-5)


def test_the_compiled_train_step_sees_a_moved_end():
    schedule = budget.WarmupCosine(0.1, warmup_steps=0, total_steps=1000, alpha=0.0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse")
    x, y = np.ones((4, 2), "float32"), np.zeros((4, 1), "float32")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # builds the train step
    schedule.set_total_steps(1)  # the decay now ended at step 1: a rate of 0 from there on
    before = [w.copy() for w in model.get_weights()]
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


@pytest.mark.parametrize("budget_s, elapsed, epoch_s, done, epochs, planned", [
    (360, 130, 60, 1, 10, 4),    # 230 s left: 3 more whole epochs
    (360, 130, 60, 1, 3, 3),     # never more than asked
    (360, 400, 60, 5, 10, 5),    # over budget: stop with what is done
    (360, 130, 0, 1, 10, 10),    # no estimate yet: keep what was asked
])
def test_epochs_that_fit(budget_s, elapsed, epoch_s, done, epochs, planned):
    assert budget.epochs_that_fit(budget_s, elapsed, epoch_s, done, epochs) == planned


def _timer(budget_s, epochs, history, steps=10, eval_steps=3):
    schedule = budget.WarmupCosine(1e-3, warmup_steps=steps, total_steps=epochs * steps)
    state = types.SimpleNamespace(history=history)
    timer = budget.TimeBudget(budget_s, epochs, steps, eval_steps, schedule, state)
    timer.set_model(types.SimpleNamespace(stop_training=False))
    return timer, schedule


def test_the_first_epoch_is_planned_from_its_later_steps(monkeypatch):
    history = []
    timer, schedule = _timer(budget_s=100, epochs=10, history=history)
    clock = iter([0.0, 30.0] + [30.0 + 2.0 * i for i in range(1, 10)])  # a 30 s graph build, then 2 s steps
    monkeypatch.setattr(budget.time, "perf_counter", lambda: next(clock))
    timer.on_epoch_begin(0)
    for step in range(10):
        timer.on_train_batch_end(step)
    history.append({"epoch": 1, "seconds": 50.0})
    timer.on_epoch_end(0)
    # an epoch: 10 steps of 2 s + 3 eval steps at a third of that = 22 s; 50 s left: 2 more epochs
    assert timer.planned == 3 and not timer.model.stop_training
    assert float(keras.ops.convert_to_numpy(schedule.total_steps)) == 30


def test_it_stops_after_the_last_epoch_that_fits_and_says_so(capsys):
    history = [{"epoch": 1, "seconds": 50.0}]
    timer, _ = _timer(budget_s=100, epochs=10, history=history)
    timer._fresh = False  # pylint: disable=protected-access  (epoch 1 ran; later epochs take their own time)
    history.append({"epoch": 2, "seconds": 30.0})
    timer.on_epoch_end(1)  # 80 s used, 30 s an epoch: nothing more fits
    assert timer.model.stop_training and timer.stopped and timer.planned == 2
    assert "Stopping after epoch 2 of 10: the time budget of" in capsys.readouterr().out


def test_no_budget_changes_nothing():
    history = [{"epoch": 1, "seconds": 5000.0}]
    timer, schedule = _timer(budget_s=0, epochs=10, history=history)
    timer.on_epoch_end(0)
    assert not timer.model.stop_training and timer.planned == 10
    assert float(keras.ops.convert_to_numpy(schedule.total_steps)) == 100


def test_the_last_asked_epoch_is_not_a_stop_for_time():
    history = [{"epoch": 1, "seconds": 50.0}, {"epoch": 2, "seconds": 60.0}]
    timer, _ = _timer(budget_s=100, epochs=2, history=history)
    timer._fresh = False  # pylint: disable=protected-access
    timer.on_epoch_end(1)
    assert not timer.stopped
