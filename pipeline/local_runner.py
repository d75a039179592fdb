"""Runs the SIGNS pipeline on this machine: LocalDagRunner, ML Metadata in SQLite, caching on."""

import sys

from pipeline import configs
from components.data import startup


def main(argv=None) -> int:
    config = configs.parse(argv, description=__doc__)
    startup.start_process()
    from pipeline import run  # pylint: disable=import-outside-toplevel  (TFX: ~35 s of imports)
    return run.run_locally(config)


if __name__ == "__main__":
    sys.exit(main())
