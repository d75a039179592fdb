"""Review: gathers what people need to approve a model and writes a self-contained HTML report."""

import glob
import json
import os
from typing import Any, Dict, List, Optional
import io

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.artifact import Artifact
from tfx.types.standard_artifacts import Examples, Model, ModelBlessing, ModelEvaluation, PushedModel
from tfx.utils import path_utils

from components.evaluation.baseline import ABSENT
from components.report import render
from components.training.train_config import HISTORY_FILE
from components.validation.data_checks import FINDINGS_FILE, DataFindings
from components.report import results

REPORT_FILE = "report.html"
SHIFTED_FILE = "shifted_accuracy.json"  # accuracy on the eval images as they are and under each shift


class ReviewReport(Artifact):
    """A self-contained HTML review of one pipeline run (`<uri>/report.html`)."""

    # KFP needs "<module>.<Class>", and its TFX launcher imports the class by that path.
    TYPE_NAME = "components.ReviewReport"


def _split_files(examples_uri: str, split: str) -> List[str]:
    return sorted(glob.glob(os.path.join(examples_uri, f"Split-{split}", "*")))


def misclassified(model, examples_uri: str, limit: int) -> Dict[str, Any]:
    """Runs the loaded SavedModel's serving_default over the eval split; returns the errors, up to `limit`."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    serve = model.signatures["serving_default"]
    errors, total = [], 0
    ds = tf.data.TFRecordDataset(_split_files(examples_uri, "eval"), compression_type="GZIP").batch(128)
    for batch in ds:
        probabilities = serve(examples=batch)["probabilities"].numpy()
        for record, probs in zip(batch.numpy(), probabilities):
            total += 1
            f = tf.train.Example.FromString(record).features.feature
            label, predicted = f["label"].int64_list.value[0], int(np.argmax(probs))
            if predicted != label and len(errors) < limit:
                errors.append({"png": f["image"].bytes_list.value[0], "label": int(label),
                               "predicted": predicted, "confidence": float(probs[predicted]),
                               "source": f["source"].bytes_list.value[0].decode() if "source" in f else "?"})
    return {"examples": errors, "evaluated": total}


def shifted_accuracy(model, examples_uri: str, limit: int) -> Dict[str, Any]:
    """The loaded SavedModel's accuracy on the eval split's first `limit` images, as they are and under each shift.

    Two sets of shifts (components/evaluation/shifts.py): the phone proxy, the ways photos people
    take of their own hands differ (turned, further away, at an angle, in shadow, in another
    room; no mask), and the pale-wall proxy (another wall, white balance, framing, camera and
    light, then all five). Each image is shifted from a seed of its source name, so two runs on
    the same data score the same pictures. The model reads them through its raw-bytes serving
    signature, as a user's photos reach it. Each accuracy comes with its 95 % Wilson interval; the
    phone proxy's headline, the mean over its five shifts, with a bootstrap interval over the images.

    Returns:
      {"evaluated": images, "rows": [{"name", "group", "accuracy", "correct", "n", "low", "high",
      "sample": PNG bytes of the first image so shifted}]}, the first row the images as they are;
      no rows for an empty split.
    """

    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from PIL import Image  # pylint: disable=import-outside-toplevel

    from components.evaluation import shifts  # pylint: disable=import-outside-toplevel
    from components.training.train_config import IMAGE_BYTES_SIGNATURE  # pylint: disable=import-outside-toplevel

    pngs, labels, keys = [], [], []
    ds = tf.data.TFRecordDataset(_split_files(examples_uri, "eval"), compression_type="GZIP").take(limit)
    for record in ds:
        f = tf.train.Example.FromString(record.numpy()).features.feature
        pngs.append(f["image"].bytes_list.value[0])
        labels.append(f["label"].int64_list.value[0])
        keys.append(f["source"].bytes_list.value[0].decode() if "source" in f else str(len(keys)))
    if not pngs:
        return {"evaluated": 0, "rows": []}
    signature = model.signatures[IMAGE_BYTES_SIGNATURE]

    def classify(encoded):
        return np.concatenate([signature(image_bytes=tf.constant(encoded[i:i + 64]))["classes"].numpy()
                               for i in range(0, len(encoded), 64)])
    rows = shifts.score(classify, [Image.open(io.BytesIO(png)) for png in pngs], keys, labels, encoded=pngs)
    return {"evaluated": len(pngs), "rows": rows}


def read_findings(findings_uri: str) -> Optional[Dict[str, Any]]:
    """DataChecks' findings.json (class counts, duplicates, anomalies, warnings); None if absent."""
    path = os.path.join(findings_uri, FINDINGS_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def gather(examples_uri: str, findings_uri: str, model_uri: str, evaluation_uri: str, blessed: bool,
           baseline_version: Optional[int], pushed: Dict[str, Any], max_misclassified: int,
           shifted_images: int = 0, baseline_skipped: str = "") -> Dict[str, Any]:
    """Collects everything the report shows into one dict (see render.render).

    The data section is DataChecks' findings and the metrics are TFMA's, as those components wrote
    them; only the misclassified images (TFMA keeps no per-example output) and the accuracy under
    shifts (`shifted_images` eval images; 0 = none) need the model run here.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel


    serving = tf.saved_model.load(path_utils.serving_model_dir(model_uri))  # once, for both sections
    history_path = os.path.join(model_uri, HISTORY_FILE)
    history = json.load(open(history_path)) if os.path.exists(history_path) else {"epochs": [], "config": {}}
    return {
        "evaluation": results.read(evaluation_uri),
        "blessed": blessed,
        "baseline_version": baseline_version,
        "baseline_skipped": baseline_skipped,
        "pushed": pushed,
        "history": history,
        "misclassified": misclassified(serving, examples_uri, max_misclassified),
        "shifted": shifted_accuracy(serving, examples_uri, shifted_images) if shifted_images
        else {"evaluated": 0, "rows": []},
        "findings": read_findings(findings_uri),
        "paths": {"model": model_uri, "evaluation": evaluation_uri, "examples": examples_uri,
                  "findings": os.path.join(findings_uri, FINDINGS_FILE)},
    }


@component
def Review(examples: InputArtifact[Examples], findings: InputArtifact[DataFindings], model: InputArtifact[Model],
           evaluation: InputArtifact[ModelEvaluation], blessing: InputArtifact[ModelBlessing],
           baseline: InputArtifact[Model], pushed_model: InputArtifact[PushedModel],
           report: OutputArtifact[ReviewReport], max_misclassified: Parameter[int] = 24,
           shifted_images: Parameter[int] = 120) -> None:
    """Writes `report.html`: the decision, metrics against the baseline, curves, confusions, data.

    Args:
      examples: ExampleGen's output; the eval split's misclassified images are shown.
      findings: DataChecks' findings.json: class counts, duplicates, anomalies, warnings.
      model: the candidate (its history.json has the training curves).
      evaluation: the Evaluator's TFMA output; blessing: its decision.
      baseline: LatestServedModel's output (the serving version, or marked absent).
      pushed_model: what the Pusher did.
      report: where report.html goes.
      max_misclassified: how many misclassified eval images the page shows at most.
      shifted_images: how many eval images are scored under each shift of
        components/evaluation/shifts.py (each costs 13 predictions); 0 = none.
    """
    absent = baseline.get_int_custom_property(ABSENT)
    props = pushed_model.mlmd_artifact.custom_properties
    pushed = {"pushed": bool(props["pushed"].int_value) if "pushed" in props else False,
              "destination": props["pushed_destination"].string_value if "pushed_destination" in props else "",
              "version": props["pushed_version"].string_value if "pushed_version" in props else "",
              "already_serving_version": props["already_serving_version"].int_value
              if "already_serving_version" in props else None,
              "not_pushed_reason": props["not_pushed_reason"].string_value if "not_pushed_reason" in props else ""}
    facts = gather(examples.uri, findings.uri, model.uri, evaluation.uri,
                   blessed=bool(blessing.get_int_custom_property("blessed")),
                   baseline_version=None if absent else baseline.get_int_custom_property("served_version"),
                   baseline_skipped=baseline.get_string_custom_property("skipped_versions")
                   if baseline.has_custom_property("skipped_versions") else "",
                   pushed=pushed, max_misclassified=max_misclassified, shifted_images=shifted_images)
    os.makedirs(report.uri, exist_ok=True)
    with open(os.path.join(report.uri, SHIFTED_FILE), "w") as f:  # for the run summary
        rows = facts["shifted"]["rows"]
        json.dump({"evaluated": facts["shifted"]["evaluated"],
                   "accuracy": {row["name"]: row["accuracy"] for row in rows},
                   "interval": {row["name"]: [row["low"], row["high"]] for row in rows},
                   "group": {row["name"]: row["group"] for row in rows}}, f, indent=1)
    with open(os.path.join(report.uri, REPORT_FILE), "w") as f:
        f.write(render.render(facts))
    report.set_string_custom_property("report_path", os.path.join(report.uri, REPORT_FILE))
