"""LatestServedModel: the model now serving, read from the push destination, as the baseline.

An ordinary component rather than `tfx.dsl.Resolver`, so open-source Kubeflow Pipelines (which
runs only container and importer executors) can run it too. The serving directory may be a local
path or an object-store URL (`components.data.storage`).
"""

import os

from tfx.dsl.component.experimental.annotations import OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Model

from components.push import serving
from components.data import storage

ABSENT = "absent"  # int custom property: 1 when nothing is served yet (the first run)


@component
def LatestServedModel(serving_dir: Parameter[str], serving_state: Parameter[str],
                      baseline: OutputArtifact[Model]) -> None:
    """Copies the newest served version into `baseline`, or marks it absent.

    Args:
      serving_dir: the Pusher's destination.
      serving_state: `serving.state(serving_dir)` as the runner saw it; part of the cache key, so a
        push since the last run is noticed.
      baseline: the output Model (Format-Serving layout, as the Trainer writes).
    """
    del serving_state  # only a cache key
    version = serving.newest_version(serving_dir)
    if version is None:
        baseline.set_int_custom_property(ABSENT, 1)
        return
    storage.download_tree(serving.version_dir(serving_dir, version), os.path.join(baseline.uri, "Format-Serving"))
    baseline.set_int_custom_property(ABSENT, 0)
    baseline.set_int_custom_property("served_version", version)
    baseline.set_string_custom_property("served_from", serving.version_dir(serving_dir, version))
