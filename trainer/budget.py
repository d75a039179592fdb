"""Training that fits a time budget: the learning-rate schedule is planned to end where the time does.

`WarmupCosine` is Adam's rate: a linear warm-up, then cosine decay to `alpha` of the peak by the
schedule's last step. Its length is a variable, so it can be shortened while training runs without
rebuilding the train step.

`TimeBudget` measures the steps as they run. After each epoch it works out how many epochs fit in
the budget (the first epoch's estimate comes from its later steps: its wall time also holds the
graph build), shortens the schedule to end with the last epoch that fits, and stops training
there. The exported weights are still the best epoch's (`checkpoints.TrainingState`), and the
history records the plan, so the run summary can say that the run stopped for time.
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


def epochs_that_fit(budget_s: float, elapsed_s: float, epoch_s: float, done: int, epochs: int) -> int:
    """The epochs to run in all: those done, plus the whole epochs of `epoch_s` that fit in what is left."""
    if epoch_s <= 0:
        return epochs
    more = int(max(0.0, budget_s - elapsed_s) // epoch_s)
    return max(done, min(epochs, done + more))


class TimeBudget(keras.callbacks.Callback):
    """Plans the epochs into `budget_s` seconds of training, and stops after the last that fits.

    Put it after `checkpoints.TrainingState` in the callbacks: it reads that history's epoch times.

    Args:
      budget_s: seconds of training (the epochs' wall time, validation included); 0 = no budget.
      epochs: the epochs asked for; the plan never exceeds them.
      steps_per_epoch: train steps per epoch.
      eval_steps: validation steps per epoch (forward only: counted as a third of a train step).
      schedule: the optimizer's `WarmupCosine`, shortened with the plan; None leaves the rate alone.
      state: the run's `TrainingState` (its `history` has each epoch's seconds, resumed ones too).
    """

    def __init__(self, budget_s: float, epochs: int, steps_per_epoch: int, eval_steps: int,
                 schedule: Optional[WarmupCosine], state):
        super().__init__()
        self.budget_s, self.epochs = budget_s, epochs
        self.steps_per_epoch, self.eval_steps = steps_per_epoch, eval_steps
        self.schedule, self.state = schedule, state
        self.planned = epochs
        self.stopped = False
        self._step_times: List[float] = []
        self._last: Optional[float] = None
        self._fresh = True  # the first epoch of this process: its time includes building the graph

    def on_epoch_begin(self, epoch, logs=None):
        self._step_times, self._last = [], None

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self._last is not None:
            self._step_times.append(now - self._last)
        self._last = now

    def estimate_epoch_s(self) -> float:
        """The seconds one more epoch will take."""
        if not self._fresh or len(self._step_times) < 4:
            return self.state.history[-1]["seconds"] if self.state.history else 0.0
        step = statistics.median(self._step_times[len(self._step_times) // 2:])  # past the graph build
        return step * (self.steps_per_epoch + self.eval_steps / 3)

    def on_epoch_end(self, epoch, logs=None):
        if not self.budget_s:
            return
        done = epoch + 1
        elapsed = sum(r["seconds"] for r in self.state.history)
        estimate = self.estimate_epoch_s()
        self._fresh = False
        planned = epochs_that_fit(self.budget_s, elapsed, estimate, done, self.epochs)
        if planned < self.planned:
            self.planned = planned
            if self.schedule is not None:
                self.schedule.set_total_steps(planned * self.steps_per_epoch)
            if planned > done:
                _say(f"Time budget: {self.budget_s / 60:g} min of training, {elapsed:.0f} s used; about "
                     f"{estimate:.0f} s an epoch, so {planned} of {self.epochs} epochs, with the learning "
                     "rate's decay ending there")
        if done >= self.planned and done < self.epochs and not self.model.stop_training:
            self.model.stop_training = True
            self.stopped = True
            _say(f"Stopping after epoch {done} of {self.epochs}: the time budget of {self.budget_s / 60:g} min "
                 f"is spent ({elapsed:.0f} s of training; another epoch takes about {estimate:.0f} s)")
