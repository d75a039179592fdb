"""Runs the SIGNS pipeline on this machine: LocalDagRunner, ML Metadata in SQLite, caching on."""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if not __package__ and _HERE in sys.path:
    # `python pipeline/local_runner.py` puts pipeline/ first on sys.path, where pipeline.py would
    # shadow the `pipeline` package; resolve imports from the installed package instead.
    sys.path.remove(_HERE)

from pipeline import configs  # pylint: disable=wrong-import-position


def main(argv=None) -> int:
    config = configs.parse(argv, description=__doc__)
    from pipeline import run  # pylint: disable=import-outside-toplevel  (TFX: ~35 s of imports)
    return run.run_locally(config)


if __name__ == "__main__":
    sys.exit(main())
