"""The curated schema: SchemaGen's inferred schema plus what we know of every SIGNS record."""

from typing import Sequence

from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts
from tfx.utils import io_utils

SCHEMA_FILE = "schema.pbtxt"  # the file name SchemaGen and ImportSchemaGen write


def parse_classes(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]."""
    return [int(c) for c in text.split(",")]


def curate(schema: schema_pb2.Schema, classes: Sequence[int]) -> schema_pb2.Schema:
    """Returns `schema` with the constraints SIGNS records always meet.

    - `label`: INT, one value in every example, in the domain [min(classes), max(classes)];
    - `image`: BYTES, one value in every example (that it decodes to a non-empty 64x64 image is
      checked by `components.validation.data_checks`, which TFDV cannot express);
    - `source`: BYTES, free text: the string domain SchemaGen infers from a small set (file names
      of the train split) would flag every new file name, so it is dropped.

    Raises:
      ValueError: the schema lacks `image` or `label`, or has them with another type.
    """
    curated = schema_pb2.Schema()
    curated.CopyFrom(schema)
    features = {f.name: f for f in curated.feature}
    for name, kind in (("image", schema_pb2.BYTES), ("label", schema_pb2.INT)):
        if name not in features or features[name].type != kind:
            raise ValueError(f"schema needs a {schema_pb2.FeatureType.Name(kind)} feature '{name}', "
                             f"got features {[(f.name, schema_pb2.FeatureType.Name(f.type)) for f in curated.feature]}")
    for feature in curated.feature:
        feature.presence.min_fraction = 1.0
        feature.presence.min_count = 1
        if feature.name != "label":
            _drop_domain(curated, feature)
        if not feature.HasField("shape") and not feature.HasField("value_count"):
            feature.value_count.min, feature.value_count.max = 1, 1
    label = features["label"]
    label.int_domain.min, label.int_domain.max = min(classes), max(classes)
    return curated


def _drop_domain(schema: schema_pb2.Schema, feature: schema_pb2.Feature) -> None:
    if feature.WhichOneof("domain_info") == "domain":
        kept = [d for d in schema.string_domain if d.name != feature.domain]
        del schema.string_domain[:]
        schema.string_domain.extend(kept)
    feature.ClearField("domain_info")


def signs_schema(classes: Sequence[int]) -> schema_pb2.Schema:
    """The curated schema written from scratch: a starting point for a `--schema` file."""
    schema = schema_pb2.Schema()
    for name, kind in (("image", schema_pb2.BYTES), ("label", schema_pb2.INT),
                       ("source", schema_pb2.BYTES)):
        feature = schema.feature.add(name=name, type=kind)
        feature.shape.dim.add(size=1)
    return curate(schema, classes)


@component
def CurateSchema(schema: InputArtifact[standard_artifacts.Schema],
                 curated_schema: OutputArtifact[standard_artifacts.Schema],
                 classes: Parameter[str]) -> None:
    """Writes `curate(schema, classes)`; `classes` is comma-separated, e.g. '0,1,2,3,4,5'."""
    inferred = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(schema.uri))
    io_utils.write_pbtxt_file(f"{curated_schema.uri}/{SCHEMA_FILE}",
                              curate(inferred, parse_classes(classes)))
