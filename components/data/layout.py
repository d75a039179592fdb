"""What this project keeps under a pipeline root, and where: the one place that names those paths.

TFX and KFP place the components' own outputs themselves (`<root>/<component>/<output>/<id>`
locally, `<root>/<pipeline>/<run id>/<task>/...` on Kubeflow) and ML Metadata records them; every
other path under a root is one of these.
"""

import dataclasses

from components.data import storage


@dataclasses.dataclass(frozen=True)
class PipelineRoot:
    """A pipeline root: a local directory, or a gs://, s3:// or minio:// URL."""

    location: str

    def _under(self, *parts: str) -> str:
        return storage.join(self.location, *parts)

    @property
    def serving_dir(self) -> str:
        """Where pushes go unless told otherwise: TF Serving's base directory, a version per folder."""
        return self._under("serving_model")

    @property
    def checkpoints(self) -> str:
        """Every training's resumable checkpoints, each in a folder keyed by its inputs."""
        return self._under("checkpoints")

    @property
    def data(self) -> str:
        """Kubeflow's default data root, which `run-local --data` and users upload to."""
        return self._under("data")

    def synthetic_data(self, version: int) -> str:
        """The generated synthetic set (`components.data.synthetic.VERSION`): a set drawn by another
        version keeps a folder of its own."""
        return self._under("data", f"synthetic-v{version}")

    @property
    def metadata(self) -> str:
        """The local runner's ML Metadata store (SQLite)."""
        return self._under("metadata.sqlite")

    @property
    def logs(self) -> str:
        """The local runner's full logs, one file a run."""
        return self._under("logs")

    @property
    def schemas(self) -> str:
        """Copies of `--schema` files, each named by its content (ImportSchemaGen caches by path)."""
        return self._under("schemas")
