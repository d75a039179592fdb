"""What every entry point does first: TensorFlow's oneDNN CPU kernels on every x86 CPU, and no start-up log.

It sits in the lowest layer so that every entry point, whatever its layer, calls the same one.

TensorFlow 2.16 on Linux turns its oneDNN kernels on by itself only where the CPU has AVX-512 VNNI,
AVX-512 BF16, AVX-VNNI or AMX (`DefaultOneDnnPolicy` in tensorflow/core/util/port.cc). On any other
x86 CPU, an AVX2 laptop or server among them, it trains with Eigen's kernels, whose backward
convolutions run the seed's ResNet50 far slower than oneDNN's (`bench/profile_step.py` measures
it; bench/README.md, "Where a training step's time goes").

TensorFlow reads `TF_ENABLE_ONEDNN_OPTS` once, when it first asks, and that happens while it is
imported, so every entry point calls `start_process()` before anything imports TensorFlow. A user's own
setting of the variable wins (`TF_ENABLE_ONEDNN_OPTS=0` turns the kernels off).
"""

import logging
import os
import sys
from typing import MutableMapping, Optional

from components.data import storage, stores

ENV = "TF_ENABLE_ONEDNN_OPTS"


def enable(environ: Optional[MutableMapping[str, str]] = None) -> bool:
    """Asks TensorFlow for its oneDNN kernels unless `ENV` is already set; returns whether they will be on.

    Logs a warning, and changes nothing, when TensorFlow is already imported in this process (the
    setting would come too late to count).
    """
    environ = os.environ if environ is None else environ
    if ENV in environ:
        return environ[ENV].strip().lower() in ("1", "true")
    if "tensorflow" in sys.modules:
        logging.getLogger(__name__).warning(
            "%s was not set before TensorFlow was imported: TensorFlow keeps its own choice", ENV)
        return False
    environ[ENV] = "1"
    return True


def start_process(environ: Optional[MutableMapping[str, str]] = None) -> None:
    """What every entry point does first, before anything imports TensorFlow: oneDNN (`enable`), no
    TensorFlow start-up log (`TF_CPP_MIN_LOG_LEVEL=3` unless set), and the object-store settings the
    environment gives, handed to the storage layer."""
    environ = os.environ if environ is None else environ
    environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    enable(environ)
    storage.configure(stores.StoreSettings.from_environment(environ))
