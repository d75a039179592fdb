"""The validation gate: ExampleValidator's anomalies plus the checks TFDV cannot express.

Our checks read the Examples once, streaming: images that do not decode to 64x64 RGB, a class
missing from a split, a class with fewer than `min_class_share` of its fair share of a split,
duplicate images within and across splits, and images ExampleGen skipped. Everything lands in a
`findings.json` artifact; errors then raise `SignsDataError` with one line that lists them, so the
Trainer, which runs after this component, never starts on bad data.
"""

import collections
import glob
import hashlib
import io
import json
import os
from typing import Dict, Iterable, Iterator, List, Sequence, Tuple

from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact, artifact_utils, standard_artifacts

from components.data import example_gen, sources
from components.validation.schema import parse_classes

FINDINGS_FILE = "findings.json"
ANOMALIES_FILE = "SchemaDiff.pb"  # ExampleValidator's file in each Split-<name>/
MAX_LISTED = 20  # duplicate pairs and skipped images listed in full in findings.json


class DataFindings(artifact.Artifact):
    """findings.json: the data checks' errors, warnings, anomalies, class counts and duplicates."""

    # "<module>.<Class>", as KFP requires and its TFX launcher imports (see components/__init__.py).
    TYPE_NAME = "components.DataFindings"


def describe_constraints(feature: schema_pb2.Feature) -> str:
    """What the schema expects of a feature, in words: type, domain, presence, values."""
    parts = [schema_pb2.FeatureType.Name(feature.type)]
    if feature.HasField("int_domain"):
        parts.append(f"in [{feature.int_domain.min}, {feature.int_domain.max}]")
    if feature.HasField("presence") and feature.presence.min_fraction:
        parts.append(f"in {feature.presence.min_fraction:.0%} of examples")
    if feature.HasField("shape"):
        parts.append(f"shape {[d.size for d in feature.shape.dim]}")
    elif feature.HasField("value_count"):
        parts.append(f"{feature.value_count.min}..{feature.value_count.max} values")
    return ", ".join(parts)


def anomaly_findings(anomalies_by_split: Dict[str, anomalies_pb2.Anomalies]) -> List[str]:
    """One line per anomaly: split, feature, what the schema expected and what was found."""
    lines = []
    for split, anomalies in sorted(anomalies_by_split.items()):
        expected = {f.name: f for f in anomalies.baseline.feature}
        for name, info in sorted(anomalies.anomaly_info.items()):
            want = describe_constraints(expected[name]) if name in expected else "not in the schema"
            found = "; ".join(f"{r.short_description}: {r.description}" for r in info.reason) or info.description
            lines.append(f"{split}: feature '{name}' expected {want}; found {found}")
        if anomalies.HasField("dataset_anomaly_info"):
            lines.append(f"{split}: data set: {anomalies.dataset_anomaly_info.description}")
    return lines


def read_anomalies(uri: str, splits: Iterable[str]) -> Dict[str, anomalies_pb2.Anomalies]:
    """Reads ExampleValidator's anomalies of each split."""
    found = {}
    for split in splits:
        path = os.path.join(uri, f"Split-{split}", ANOMALIES_FILE)
        if os.path.exists(path):
            with open(path, "rb") as f:
                found[split] = anomalies_pb2.Anomalies.FromString(f.read())
    return found


def read_split(split_uri: str) -> Iterator[Tuple[bytes, int, str]]:
    """Streams (image bytes, label, source id) from a split's gzip TFRecords of our schema."""
    for path in sorted(glob.glob(os.path.join(split_uri, "*"))):
        for raw, where, default_source in sources.read_tfrecord_file(path):
            example = sources.tf_example(raw, where)
            f = example.features.feature
            source = f["source"].bytes_list.value[0].decode() if f["source"].bytes_list.value else default_source
            yield f["image"].bytes_list.value[0], f["label"].int64_list.value[0], source


def decode_problem(image: bytes) -> str:
    """'' if `image` decodes to a 64x64 RGB image, else what is wrong with it."""
    from PIL import Image, UnidentifiedImageError  # pylint: disable=import-outside-toplevel

    if not image:
        return "empty image (0 bytes)"
    try:
        with Image.open(io.BytesIO(image)) as img:
            img.load()
            mode, size = img.mode, img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        return f"does not decode ({e})"
    if mode != "RGB" or size != (sources.IMAGE_SIZE, sources.IMAGE_SIZE):
        return f"is {mode} {size[0]}x{size[1]}, expected RGB {sources.IMAGE_SIZE}x{sources.IMAGE_SIZE}"
    return ""


class Scan:
    """Accumulates per-split class counts, decode problems and duplicates over a stream of records.

    Holds one 16-byte content hash per distinct image, not the images.
    """

    def __init__(self):
        self.counts: Dict[str, collections.Counter] = {}
        self.undecodable: List[str] = []
        self._first: Dict[bytes, Tuple[str, str]] = {}  # content hash -> (split, source) first seen
        self._splits_of: Dict[bytes, set] = {}  # only for images seen more than once
        self.within: collections.Counter = collections.Counter()  # extra copies inside a split
        self.pairs: List[str] = []

    def add(self, split: str, image: bytes, label: int, source: str) -> None:
        self.counts.setdefault(split, collections.Counter())[label] += 1
        problem = decode_problem(image)
        if problem:
            self.undecodable.append(f"{split}: image of '{source}' {problem}")
            return
        key = hashlib.blake2b(image, digest_size=16).digest()
        if key not in self._first:
            self._first[key] = (split, source)
            return
        first_split, first_source = self._first[key]
        seen_in = self._splits_of.setdefault(key, {first_split})
        if split in seen_in:
            self.within[split] += 1
        seen_in.add(split)
        if len(self.pairs) < MAX_LISTED:
            self.pairs.append(f"{first_split}: {first_source} == {split}: {source}")

    @property
    def across(self) -> int:
        """Distinct images found in more than one split."""
        return sum(1 for splits in self._splits_of.values() if len(splits) > 1)


def class_findings(counts: Dict[str, collections.Counter], classes: Sequence[int],
                   min_class_share: float) -> Tuple[List[str], List[str]]:
    """(errors, warnings): a class missing from a split is an error; a rare one a warning.

    A class is rare in a split when it has fewer than `min_class_share` times the split's
    mean examples per class.
    """
    errors, warnings = [], []
    for split, counter in sorted(counts.items()):
        mean = sum(counter[c] for c in classes) / len(classes)
        for c in classes:
            if counter[c] == 0:
                errors.append(f"{split}: class {c} is missing (0 of {sum(counter.values())} examples)")
            elif counter[c] < min_class_share * mean:
                warnings.append(f"{split}: class {c} is under-represented: {counter[c]} examples, "
                                f"below {min_class_share:g} x the mean {mean:.1f} a class")
    return errors, warnings


def read_skipped(examples_uri: str) -> List[str]:
    """The images ExampleGen skipped (with `--bad-images skip`), one reason a line."""
    lines = []
    for path in sorted(glob.glob(os.path.join(examples_uri, example_gen.SKIPPED_GLOB))):
        with open(path, encoding="utf-8") as f:
            lines.extend(line.rstrip("\n") for line in f if line.strip())
    return lines


def run_checks(examples_uri: str, splits: Sequence[str], anomalies_uri: str,
               classes: Sequence[int], min_class_share: float) -> dict:
    """Runs every check on an Examples artifact; returns the findings as a JSON-able dict."""
    scan = Scan()
    for split in splits:
        scan.counts.setdefault(split, collections.Counter())
        for image, label, source in read_split(os.path.join(examples_uri, f"Split-{split}")):
            scan.add(split, image, label, source)
    anomalies = anomaly_findings(read_anomalies(anomalies_uri, splits))
    errors = anomalies + scan.undecodable
    class_errors, warnings = class_findings(scan.counts, classes, min_class_share)
    errors += class_errors
    if scan.across:
        warnings.append(f"{scan.across} image(s) appear in more than one split, e.g. {scan.pairs[0]}")
    for split, n in sorted(scan.within.items()):
        warnings.append(f"{split}: {n} duplicate image(s) within the split")
    skipped = read_skipped(examples_uri)
    if skipped:
        warnings.append(f"{len(skipped)} bad image(s) skipped by ExampleGen, e.g. {skipped[0]}")
    return {
        "errors": errors,
        "warnings": warnings,
        "anomalies": anomalies,  # ExampleValidator's, also among the errors; listed for the review
        "splits": {s: {"examples": sum(c.values()), "classes": {str(k): v for k, v in sorted(c.items())}}
                   for s, c in scan.counts.items()},
        "duplicates": {"within": {s: scan.within[s] for s in splits}, "across_splits": scan.across,
                       "examples": scan.pairs},
        "skipped": skipped[:MAX_LISTED], "skipped_count": len(skipped),
    }


def error_line(findings: dict, path: str) -> str:
    """The one line a run stops with: every error (up to three), and where the rest are."""
    errors = findings["errors"]
    listed = "; ".join(errors[:3]) + (f"; and {len(errors) - 3} more" if len(errors) > 3 else "")
    return f"data validation failed, {len(errors)} error(s): {listed} (all findings: {path})"


@component
def DataChecks(examples: InputArtifact[standard_artifacts.Examples],
               anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
               findings: OutputArtifact[DataFindings],
               classes: Parameter[str],
               min_class_share: Parameter[float] = 0.5) -> None:
    """Writes findings.json; raises `SignsDataError` naming each error so the run stops here.

    Args:
      examples: ExampleGen's output.
      anomalies: ExampleValidator's output for the same examples.
      findings: where findings.json goes.
      classes: comma-separated labels, e.g. '0,1,2,3,4,5'.
      min_class_share: a class with fewer than this times a split's mean examples per class is
        reported as under-represented (a warning); 0 turns the warning off.
    """
    splits = artifact_utils.decode_split_names(examples.split_names)
    result = run_checks(examples.uri, splits, anomalies.uri, parse_classes(classes), min_class_share)
    path = os.path.join(findings.uri, FINDINGS_FILE)
    os.makedirs(findings.uri, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    findings.set_int_custom_property("errors", len(result["errors"]))
    findings.set_int_custom_property("warnings", len(result["warnings"]))
    findings.set_int_custom_property("duplicates_across_splits", result["duplicates"]["across_splits"])
    if result["errors"]:
        raise sources.SignsDataError(error_line(result, path))


