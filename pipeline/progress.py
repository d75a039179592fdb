"""Console progress for a pipeline run: one line per component step, everything else to a log file."""

import logging
import os
import re
import sys
import time
import warnings

from absl import logging as absl_logging

_COMPONENT = re.compile(r"^Component (\w+) is (running|finished)\.")
_QUIET_LOGGERS = ("tensorflow", "apache_beam", "h5py", "matplotlib")
# TFX warnings that say nothing to a user of this pipeline; they still go to the log file.
_NOISE = ("ArtifactQuery.property_predicate is not supported",
          "`custom_executor_spec` is deprecated")


class ProgressHandler(logging.Handler):
    """Prints 'Component X is running/finished' as timed progress lines; passes other warnings."""

    def __init__(self, stream=None):
        super().__init__(level=logging.INFO)
        self.stream = stream or sys.stdout
        self.started = time.time()
        self._component_start = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        match = _COMPONENT.match(message)
        elapsed = time.time() - self.started
        if match:
            name, state = match.groups()
            if state == "running":
                self._component_start[name] = time.time()
                line = f"[{elapsed:5.0f}s] {name} ..."
            else:
                took = time.time() - self._component_start.get(name, time.time())
                line = f"[{elapsed:5.0f}s] {name} done ({took:.0f} s)"
        elif (record.levelno >= logging.WARNING and not record.name.startswith(_QUIET_LOGGERS)
              and not message.startswith(_NOISE)):
            line = f"[{elapsed:5.0f}s] {record.levelname.lower()}: {message.splitlines()[0]}"
        else:
            return
        self.stream.write(line + "\n")
        self.stream.flush()


def setup(log_dir: str) -> str:
    """Sends all INFO logs to a new file under `log_dir` and progress to stdout; returns the file."""
    # TensorFlow's C++ logging (CUDA plugin notices on a CPU machine); real errors still raise.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=FutureWarning)  # google-api-core's Python 3.10 notice
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    os.makedirs(log_dir, exist_ok=True)
    path = os.path.join(log_dir, time.strftime("run-%Y%m%d-%H%M%S.log"))
    root = logging.getLogger()
    root.removeHandler(absl_logging.get_absl_handler())
    file_handler = logging.FileHandler(path)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(file_handler)
    root.addHandler(ProgressHandler())
    root.setLevel(logging.INFO)
    absl_logging.set_verbosity(absl_logging.INFO)
    logging.captureWarnings(True)
    return path
