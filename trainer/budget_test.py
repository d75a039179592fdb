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


@pytest.mark.parametrize("left_s, step_s, extra_s, into, per_epoch, fit", [
    (100, 1.0, 10, 0, 100, 90),   # one epoch end (the plan's last): 90 steps + 10 s
    (100, 1.0, 10, 0, 50, 80),    # 90 steps would cross the end at 50 as well: 80 + 2 x 10 s
    (100, 1.0, 10, 0, 40, 80),    # 80 steps cross an epoch end at 40, and end at 80: two ends
    (100, 1.0, 10, 30, 40, 70),   # 30 steps in: ends at 40, 80 and the plan's last, 100 (70 + 30)
    (100, 2.0, 0, 0, 10, 50),     # nothing but steps
    (5, 1.0, 10, 0, 10, 0),       # not even the validation fits
    (100, 0.0, 10, 0, 10, 0),     # no step time yet: nothing planned here
])
def test_steps_that_fit(left_s, step_s, extra_s, into, per_epoch, fit):
    assert budget.steps_that_fit(left_s, step_s, extra_s, into, per_epoch) == fit


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _timer(monkeypatch, budget_s, epochs, steps=10, eval_steps=3, history=None, reserve=0.0, every=2):
    clock = _Clock()
    monkeypatch.setattr(budget.time, "perf_counter", clock)
    schedule = budget.WarmupCosine(1e-3, warmup_steps=2, total_steps=epochs * steps)
    state = types.SimpleNamespace(history=list(history or []))
    timer = budget.TimeBudget(budget_s, epochs, steps, eval_steps, schedule, state, reserve=reserve,
                              every=every, window=6)
    timer.set_model(types.SimpleNamespace(stop_training=False))
    timer.on_train_begin()
    return timer, schedule, clock


def _steps(timer, clock, n, step_s, first_s=None):
    for i in range(n):
        clock.now += first_s if (i == 0 and first_s is not None) else step_s
        timer.on_train_batch_end(i)
        if timer.model.stop_training:
            return i + 1
    return n


def _end(schedule):
    return float(keras.ops.convert_to_numpy(schedule.total_steps))


def test_the_plan_counts_steps_past_the_graph_build(monkeypatch):
    timer, schedule, clock = _timer(monkeypatch, budget_s=100, epochs=10)
    timer.on_epoch_begin(0)
    clock.now += 30.0  # the first step builds the graph
    timer.on_train_batch_end(0)
    _steps(timer, clock, 7, 2.0)
    # 44 s used, 2 s a step (the median), 3 eval steps at a third of a step: 2 s an epoch end.
    # 56 s left: 24 more steps and 4 epoch ends (at 10, 20, 30 and the plan's last, 32) = 56 s.
    assert timer.planned_steps == 32 and _end(schedule) == 32
    assert not timer.model.stop_training


def test_a_slower_neighbour_shortens_the_plan_and_a_faster_one_lengthens_it(monkeypatch):
    timer, schedule, clock = _timer(monkeypatch, budget_s=200, epochs=10)
    timer.on_epoch_begin(0)
    _steps(timer, clock, 8, 1.0)
    fast = timer.planned_steps
    _steps(timer, clock, 8, 4.0)  # another program starts: steps take 4x as long
    slow = timer.planned_steps
    _steps(timer, clock, 8, 1.0)  # it stops again
    assert slow < fast and timer.planned_steps > slow
    assert _end(schedule) == timer.planned_steps


def test_it_stops_at_the_planned_step_mid_epoch_and_says_so(monkeypatch, capsys):
    timer, _, clock = _timer(monkeypatch, budget_s=21, epochs=10)
    timer.on_epoch_begin(0)
    ran = _steps(timer, clock, 10, 2.0)  # at step 6, 12 s used: 3 more steps and the validation fit
    assert timer.model.stop_training and timer.stopped and ran < 10
    assert timer.step == timer.planned_steps == ran
    clock.now += 1.0
    timer.on_epoch_end(0)
    out = capsys.readouterr().out
    assert f"Stopped at step {ran} of 100 (in epoch 1 of 10): the time budget of 0.35 min is spent" in out


def test_the_reserve_is_kept(monkeypatch):
    plans = []
    for reserve in (0.0, 0.2):
        timer, _, clock = _timer(monkeypatch, budget_s=100, epochs=100, reserve=reserve)
        timer.on_epoch_begin(0)
        _steps(timer, clock, 8, 1.0)
        plans.append(timer.planned_steps)
    assert plans[1] < plans[0]


def test_an_epoch_end_is_timed_and_counted(monkeypatch):
    timer, _, clock = _timer(monkeypatch, budget_s=1000, epochs=100)
    timer.on_epoch_begin(0)
    _steps(timer, clock, 10, 1.0)
    clock.now += 20.0  # validation and checkpoint take 20 s
    timer.on_epoch_end(0)
    assert timer.epoch_extra_s(1.0) == pytest.approx(20.0)


def test_no_budget_changes_nothing(monkeypatch):
    timer, schedule, clock = _timer(monkeypatch, budget_s=0, epochs=10)
    timer.on_epoch_begin(0)
    _steps(timer, clock, 10, 500.0)
    timer.on_epoch_end(0)
    assert not timer.model.stop_training and timer.planned_steps == 100 and _end(schedule) == 100


def test_the_last_asked_step_is_not_a_stop_for_time(monkeypatch):
    timer, _, clock = _timer(monkeypatch, budget_s=1000, epochs=2)
    for epoch in range(2):
        timer.on_epoch_begin(epoch)
        _steps(timer, clock, 10, 1.0)
        timer.on_epoch_end(epoch)
    assert timer.step == 20 and not timer.stopped and not timer.model.stop_training


def test_a_resumed_run_counts_its_earlier_epochs(monkeypatch):
    timer, _, clock = _timer(monkeypatch, budget_s=100, epochs=10, history=[{"epoch": 1, "seconds": 60.0}])
    assert timer.step == 10
    timer.on_epoch_begin(1)
    _steps(timer, clock, 8, 1.0)
    # 68 s used of 100: 32 s left, 1 s a step, 1 s an epoch end: 18 steps past the 18 done, and
    # 2 epoch ends (20 and 30) among them... at most up to the plan
    assert 18 < timer.planned_steps < 18 + 32


def test_the_last_step_plans_nothing_more(monkeypatch, capsys):
    timer, _, clock = _timer(monkeypatch, budget_s=1000, epochs=1, every=1)
    timer.on_epoch_begin(0)
    _steps(timer, clock, 10, 1.0)
    timer.on_epoch_end(0)
    assert timer.planned_steps == 10 and "11 of 10 steps" not in capsys.readouterr().out
