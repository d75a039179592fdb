"""Console progress of a local run, read from ML Metadata, and the log file that takes everything else.

TFX records each component's execution in ML Metadata as it goes: RUNNING when it starts, then
COMPLETE, CACHED or FAILED. A background thread reads this run's executions from the SQLite
store every second and prints each change as a timed line, so progress comes from the same
record the summary reads, not from log text.
"""

import logging
import os
import sys
import threading
import time
import warnings
from typing import Dict, Optional, Sequence, TextIO, Tuple

from absl import logging as absl_logging

_QUIET_LOGGERS = ("tensorflow", "apache_beam", "h5py", "matplotlib")
# TFX warnings that say nothing to a user of this pipeline; they still go to the log file.
_NOISE = ("ArtifactQuery.property_predicate is not supported",
          "`custom_executor_spec` is deprecated",
          # Beam's advice for its process pool; our in_memory DirectRunner does use a thread per core.
          "If direct_num_workers is not equal to 1")


class RunMonitor(threading.Thread):
    """Prints each component's state changes in one pipeline run, polling ML Metadata.

    Args:
      metadata_path: the run's SQLite ML Metadata store (it may not exist yet).
      run_id: the pipeline run to follow.
      names: the pipeline's component ids, in order.
      stream: where the lines go.
      interval: seconds between reads.
    """

    def __init__(self, metadata_path: str, run_id: str, names: Sequence[str], stream: Optional[TextIO] = None,
                 interval: float = 1.0):
        super().__init__(name="run-monitor", daemon=True)
        self.metadata_path, self.run_id, self.names = metadata_path, run_id, tuple(names)
        self.stream = stream or sys.stdout
        self.interval = interval
        self.started = time.time()
        self._seen: Dict[Tuple[str, int], str] = {}
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(self.interval):
            self.poll()

    def stop(self) -> None:
        """Stops polling after one last read, so the final states are printed too."""
        self._stopping.set()
        if self.is_alive():
            self.join()
        self.poll()

    def poll(self) -> None:
        """Reads the run's executions once and prints what changed since the last read."""
        from components.report import run_summary  # pylint: disable=import-outside-toplevel

        try:
            states = run_summary.execution_states(self.metadata_path, self.run_id, self.names)
        except Exception:  # pylint: disable=broad-except  (the writer holds the lock; read next time)
            return
        for name, execution_id, state, seconds in states:
            if self._seen.get((name, execution_id)) == state:
                continue
            self._seen[(name, execution_id)] = state
            self._print(name, state, seconds)

    def _print(self, name: str, state: str, seconds: float) -> None:
        elapsed = time.time() - self.started
        text = {"running": f"{name} ...", "complete": f"{name} done ({seconds:.0f} s)",
                "cached": f"{name} reused from cache", "failed": f"{name} FAILED ({seconds:.0f} s)"}.get(state)
        if text:
            self.stream.write(f"[{elapsed:5.0f}s] {text}\n")
            self.stream.flush()


class WarningHandler(logging.Handler):
    """Shows warnings and errors of the pipeline's own loggers on the console, one line each."""

    def __init__(self, stream: Optional[TextIO] = None):
        super().__init__(level=logging.WARNING)
        self.stream = stream or sys.stdout

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.name.startswith(_QUIET_LOGGERS) or message.startswith(_NOISE):
            return
        self.stream.write(f"{record.levelname.lower()}: {message.splitlines()[0] if message else ''}\n")
        self.stream.flush()


def setup_logging(log_dir: str) -> str:
    """Sends all INFO logs to a new file under `log_dir` and warnings to stdout; returns the file."""
    warnings.filterwarnings("ignore", category=FutureWarning)  # google-api-core's Python 3.10 notice
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    os.makedirs(log_dir, exist_ok=True)
    path = os.path.join(log_dir, time.strftime("run-%Y%m%d-%H%M%S.log"))
    root = logging.getLogger()
    root.removeHandler(absl_logging.get_absl_handler())
    file_handler = logging.FileHandler(path)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(file_handler)
    root.addHandler(WarningHandler())
    root.setLevel(logging.INFO)
    absl_logging.set_verbosity(absl_logging.INFO)
    logging.captureWarnings(True)
    return path
