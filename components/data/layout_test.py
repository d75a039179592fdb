"""Every path this project keeps under a pipeline root is named by PipelineRoot, local or on a store."""

from components.data import synthetic
from components.data.layout import PipelineRoot
from components.training.train_config import TrainConfig
from pipeline import options


def test_local_and_store_roots_lay_out_the_same():
    for root, sep in (("/work/out", "/"), ("gs://bucket/signs/", "/")):
        paths = PipelineRoot(root)
        base = root.rstrip("/")
        assert paths.serving_dir == f"{base}{sep}serving_model"
        assert paths.checkpoints == f"{base}{sep}checkpoints"
        assert paths.data == f"{base}{sep}data"
        assert paths.synthetic_data(synthetic.VERSION) == f"{base}/data/synthetic-v{synthetic.VERSION}"
        assert paths.metadata == f"{base}/metadata.sqlite"


def test_the_settings_ask_it():
    config = options.parse(["--pipeline-root", "/work/out"])
    assert config.serving_dir == PipelineRoot("/work/out").serving_dir
    assert TrainConfig().for_pipeline((0, 1), "/work/out").checkpoint_root == PipelineRoot("/work/out").checkpoints
