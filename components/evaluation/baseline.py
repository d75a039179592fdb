"""LatestServedModel: the model now serving, read from the push destination, as the baseline.

An ordinary component rather than `tfx.dsl.Resolver`, so open-source Kubeflow Pipelines (which
runs only container and importer executors) can run it too. The serving directory may be a local
path or an object-store URL (`components.data.storage`).
"""

import logging
import shutil

from tfx.dsl.component.experimental.annotations import OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Model
from tfx.utils import path_utils

from components.push import version_dirs
from components.data import storage

ABSENT = "absent"  # int custom property: 1 when nothing is served yet (the first run)
SKIPPED = "skipped_versions"  # string custom property: the newer versions that cannot be served, and why


@component
def LatestServedModel(serving_dir: Parameter[str], serving_state: Parameter[str],
                      baseline: OutputArtifact[Model]) -> None:
    """Copies the newest version that can be served into `baseline`, or marks it absent.

    A version that cannot be served (`version_dirs.model_problem`: garbage, truncated, a FIFO) is never
    the baseline: it is named in the log and in the `skipped_versions` property, and passed over.

    Args:
      serving_dir: the Pusher's destination.
      serving_state: `version_dirs.state(serving_dir)` as the runner saw it; part of the cache key, so a
        push since the last run is noticed.
      baseline: the output Model (Format-Serving layout, as the Trainer writes).
    """
    del serving_state  # only a cache key
    target = path_utils.serving_model_dir(baseline.uri)
    skipped = []
    for version in reversed(version_dirs.list_versions(serving_dir)):
        location = version_dirs.version_dir(serving_dir, version)
        if storage.is_remote(location):
            storage.download_tree(location, target)
            problem = version_dirs.model_problem(target)
        else:  # checked before it is copied: a FIFO in it would block the copy
            problem = version_dirs.model_problem(location)
            if problem is None:
                storage.download_tree(location, target)
        if problem is None:
            baseline.set_int_custom_property(ABSENT, 0)
            baseline.set_int_custom_property("served_version", version)
            baseline.set_string_custom_property("served_from", location)
            break
        skipped.append((version, problem))
        shutil.rmtree(target, ignore_errors=True)
    else:
        baseline.set_int_custom_property(ABSENT, 1)
    if skipped:  # named once here; the run summary and the review repeat it
        line = version_dirs.describe_skipped(serving_dir, skipped)
        logging.warning("Not a baseline: %s", line)
        baseline.set_string_custom_property(SKIPPED, line)
