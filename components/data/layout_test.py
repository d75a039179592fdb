"""Every path this project keeps under a pipeline root is named by PipelineRoot, local or on a store."""

from components.data import synthetic
from components.data.layout import PipelineRoot


def test_local_and_store_roots_lay_out_the_same():
    for root in ("/work/out", "gs://bucket/signs/"):
        paths = PipelineRoot(root)
        base = root.rstrip("/")
        assert paths.serving_dir == f"{base}/serving_model"
        assert paths.checkpoints == f"{base}/checkpoints"
        assert paths.data == f"{base}/data"
        assert paths.synthetic_data(synthetic.VERSION) == f"{base}/data/synthetic-v{synthetic.VERSION}"
        assert paths.metadata == f"{base}/metadata.sqlite"
