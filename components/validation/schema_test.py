"""Tests of the curated schema."""

import pytest
from tensorflow_metadata.proto.v0 import schema_pb2

from components.validation import schema as signs_schema


def _inferred():
    """What SchemaGen infers from a small set: a string domain of the train split's file names."""
    s = schema_pb2.Schema()
    for name, kind in (("image", schema_pb2.BYTES), ("label", schema_pb2.INT), ("source", schema_pb2.BYTES)):
        s.feature.add(name=name, type=kind).shape.dim.add(size=1)
    s.feature[2].domain = "source"
    s.string_domain.add(name="source", value=["a.jpg", "b.jpg"])
    return s


def test_curate_adds_the_label_domain_and_requires_every_feature():
    curated = signs_schema.curate(_inferred(), [0, 1, 2, 3, 4, 5])
    features = {f.name: f for f in curated.feature}
    assert (features["label"].int_domain.min, features["label"].int_domain.max) == (0, 5)
    assert all(f.presence.min_fraction == 1.0 and f.presence.min_count == 1 for f in curated.feature)
    # The file-name domain would flag every eval file as an anomaly.
    assert features["source"].WhichOneof("domain_info") is None and not curated.string_domain


def test_curate_refuses_a_schema_without_our_features():
    s = schema_pb2.Schema()
    s.feature.add(name="pixels", type=schema_pb2.FLOAT)
    with pytest.raises(ValueError, match=r"needs a BYTES feature 'image', got features \[\('pixels', 'FLOAT'\)\]"):
        signs_schema.curate(s, [0, 1])


def test_signs_schema_from_scratch_for_all_digits():
    s = signs_schema.signs_schema(list(range(10)))
    assert [f.name for f in s.feature] == ["image", "label", "source"]
    assert s.feature[1].int_domain.max == 9
