"""Training that fits a time budget: the plan counts steps, and follows the steps' speed both ways.

`WarmupCosine` is Adam's rate: a linear warm-up, then cosine decay to `alpha` of the peak by the
schedule's last step. Its length is a variable, so it can move while training runs without
rebuilding the train step.

`TimeBudget` times the train steps as they run. Every few steps it works out how many more steps
fit in what is left of the budget, counting each epoch's validation and checkpoint and keeping a
reserve for noise, and moves the schedule's end to the last step that fits: earlier when steps
slow down (another program starts beside the run), later again when they speed up, never past the
epochs asked for. Training stops at that step, mid-epoch if need be; Keras then validates the part
epoch as it validates a whole one. The exported weights are still the best epoch's
(`checkpoints.TrainingState`), and the history records the plan, so the run summary can say that
the run stopped for time.
"""

import math
import statistics
import time
from typing import List, Optional

from absl import logging
import keras
from keras import ops


def _say(message: str) -> None:
    print(message, flush=True)
    logging.info(message)


@keras.saving.register_keras_serializable(package="signs")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak` over `warmup_steps`, then cosine decay to `alpha` x `peak`.

    The decay ends at `total_steps`, held in a variable: `set_total_steps` moves the end.
    """

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, alpha: float = 0.01):
        self.peak, self.warmup_steps, self.alpha = float(peak), int(warmup_steps), float(alpha)
        self.initial_total_steps = int(total_steps)
        self.total_steps = keras.Variable(float(total_steps), dtype="float32", trainable=False,
                                          name="lr_total_steps")

    def set_total_steps(self, steps: int) -> None:
        self.total_steps.assign(float(max(steps, self.warmup_steps + 1)))

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = float(self.warmup_steps)
        warm = self.peak * step / max(warmup, 1.0)
        progress = ops.clip((step - warmup) / ops.maximum(self.total_steps - warmup, 1.0), 0.0, 1.0)
        cosine = self.alpha + (1.0 - self.alpha) * 0.5 * (1.0 + ops.cos(math.pi * progress))
        return ops.where(step < warmup, warm, self.peak * cosine)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "total_steps": self.initial_total_steps, "alpha": self.alpha}


def steps_that_fit(left_s: float, step_s: float, epoch_extra_s: float, into_epoch: int,
                   steps_per_epoch: int) -> int:
    """How many more train steps fit in `left_s` seconds.

    Each step takes `step_s`; each epoch end reached (the current epoch's too, `into_epoch` steps
    into it, and the last, part, epoch's) costs `epoch_extra_s` more: validation and checkpoint.
    """
    if step_s <= 0:
        return 0

    def cost(n: int) -> float:
        ends = 1 + (into_epoch + n - 1) // steps_per_epoch  # epoch ends from here to the plan's end
        return n * step_s + ends * epoch_extra_s

    low, high = 0, int(max(0.0, left_s) // step_s)  # the cost grows with n: the most that fits
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if cost(mid) <= left_s else (low, mid - 1)
    return low


class TimeBudget(keras.callbacks.Callback):
    """Plans the train steps into `budget_s` seconds, re-planning as they run, and stops at the last.

    Put it after `checkpoints.TrainingState` in the callbacks: it reads that history's epoch times.

    Args:
      budget_s: seconds of training (the steps, each epoch's validation and checkpoint); 0 = no budget.
      epochs: the epochs asked for; the plan never exceeds their steps.
      steps_per_epoch: train steps per epoch.
      eval_steps: validation steps per epoch (forward only: counted as a third of a train step
        until an epoch end has been timed).
      schedule: the optimizer's `WarmupCosine`, moved with the plan; None leaves the rate alone.
      state: the run's `TrainingState` (its `history` has each epoch's seconds, resumed ones too).
      reserve: the share of the budget kept free for noise: steps that slow down after the last
        re-plan, an epoch end that takes longer than the last.
      every: re-plan after this many steps.
      window: the steps whose median time is the step time (the newest only: a busy neighbour that
        starts or stops shows within them).
    """

    def __init__(self, budget_s: float, epochs: int, steps_per_epoch: int, eval_steps: int,
                 schedule: Optional[WarmupCosine], state, reserve: float = 0.08, every: int = 8,
                 window: int = 24):
        super().__init__()
        self.budget_s, self.epochs = budget_s, epochs
        self.steps_per_epoch, self.eval_steps = steps_per_epoch, eval_steps
        self.schedule, self.state = schedule, state
        self.reserve, self.every, self.window = reserve, every, window
        self.asked_steps = epochs * steps_per_epoch
        self.planned_steps = self.asked_steps
        self.stopped = False
        self.step = 0  # train steps done, resumed epochs included
        self._step_times: List[float] = []
        self._last: Optional[float] = None
        self._begun = 0.0  # when this process's training began
        self._before_s = 0.0  # seconds of the epochs done before this process (a resumed run)
        self._epoch_extra_s: Optional[float] = None  # an epoch end's measured cost
        self._shown: Optional[int] = None  # the plan last printed

    # -- what is known -------------------------------------------------------------------------
    def elapsed_s(self) -> float:
        return self._before_s + (time.perf_counter() - self._begun)

    def step_s(self) -> float:
        """The median of the newest steps' times (0 before there are enough)."""
        recent = self._step_times[-self.window:]
        return statistics.median(recent) if len(recent) >= 4 else 0.0

    def epoch_extra_s(self, step_s: float) -> float:
        if self._epoch_extra_s is not None:
            return self._epoch_extra_s
        return self.eval_steps * step_s / 3

    # -- the plan ------------------------------------------------------------------------------
    def replan(self) -> None:
        step_s = self.step_s()
        if not self.budget_s or not step_s or self.step >= self.asked_steps:
            return
        left = self.budget_s * (1 - self.reserve) - self.elapsed_s()
        into_epoch = self.step % self.steps_per_epoch
        more = steps_that_fit(left, step_s, self.epoch_extra_s(step_s), into_epoch, self.steps_per_epoch)
        planned = max(self.step + 1, min(self.asked_steps, self.step + more))
        if planned == self.planned_steps:
            return
        self.planned_steps = planned
        if self.schedule is not None:
            self.schedule.set_total_steps(planned)
        if self._shown is None or abs(planned - self._shown) >= self.steps_per_epoch / 2:
            self._shown = planned
            _say(f"Time budget: {self.budget_s / 60:g} min of training, {self.elapsed_s():.0f} s used; "
                 f"{step_s:.2f} s a step, so {planned} of {self.asked_steps} steps "
                 f"(about {planned / self.steps_per_epoch:.1f} of {self.epochs} epochs), "
                 "with the learning rate's decay ending there")

    # -- Keras's hooks -------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._begun = time.perf_counter()
        done = len(self.state.history)
        self._before_s = sum(r["seconds"] for r in self.state.history)
        self.step = done * self.steps_per_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self._last = None

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self._last is not None:
            self._step_times.append(now - self._last)
        self._last = now
        self.step += 1
        if self.budget_s and self.step % self.every == 0:
            self.replan()
        if self.budget_s and self.step >= self.planned_steps and self.step < self.asked_steps:
            self.model.stop_training = True
            self.stopped = True

    def on_epoch_end(self, epoch, logs=None):
        if not self.budget_s:
            return
        if self.step_s() and self._last is not None:
            # validation and checkpoint: what the epoch took beyond its steps
            self._epoch_extra_s = max(0.0, time.perf_counter() - self._last)
        if self.stopped:
            _say(f"Stopped at step {self.step} of {self.asked_steps} (in epoch {epoch + 1} of {self.epochs}): "
                 f"the time budget of {self.budget_s / 60:g} min is spent ({self.elapsed_s():.0f} s of training)")
        else:
            self.replan()
