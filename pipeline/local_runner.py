"""Runs the SIGNS pipeline on this machine: LocalDagRunner, ML Metadata in SQLite, caching on."""

import sys

from pipeline import options
from components.data import startup


def main(argv=None) -> int:
    config = options.parse(argv, description=__doc__)
    startup.start_process()
    from pipeline import local_dag  # pylint: disable=import-outside-toplevel  (TFX: ~35 s of imports)
    return local_dag.run_locally(config)


if __name__ == "__main__":
    sys.exit(main())
