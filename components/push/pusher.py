"""Pusher executor: blessed models only, as a new integer version in TF Serving layout."""

from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.components.pusher import component as pusher_component, executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import json_utils, proto_utils

from components.data import storage
from components.evaluation.evaluator import COMPARED_WITH_KEY
from components.push import canary, kserve_manifests, tf_serving, version_dirs

NOT_PUSHED_KEY = "not_pushed_reason"  # PushedModel custom property: why a blessed model was not pushed
KSERVE_MANIFEST_KEY = "kserve_manifest"  # PushedModel custom property: the InferenceService written beside it


class VersionedPusherExecutor(pusher_executor.Executor):
    """Pushes to `<base_directory>/<next version>` atomically; skips a model already serving.

    The candidate is first loaded in a process of its own and must answer the Trainer's canary
    request through each signature (`canary.check`); one that does not is not pushed, and says why.

    A blessing that says which version it was compared against (`compared_with_version`, from
    BaselineAwareEvaluator) is pushed only as the version right after it: if another run pushed
    since, this run is not pushed, and says why.

    `custom_config` may hold `keep_last` (int, 0 = keep every version) and `kserve` (the
    `components.push.kserve_manifests.inference_service` settings: name, namespace, service_account): then
    a push to an object store also writes the version's InferenceService manifest beside it.
    """

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        pushed = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(pushed)
            return
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        model_path = self.GetModelPath(input_dict)
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        serving_dir = destination.filesystem.base_directory
        custom = json_utils.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "null") or {}

        newest, _ = version_dirs.newest_servable(serving_dir)  # a broken copy of this model is no reason to skip it
        if newest is not None and version_dirs.push_info(serving_dir, newest).get("model_uri") == model.uri:
            logging.info("Model %s is already serving as version %d; not pushed again.", model.uri, newest)
            self._MarkNotPushed(pushed)
            pushed.set_int_custom_property("already_serving_version", newest)
            return
        try:
            problem = canary.check(model_path, storage.join(model.uri, canary.CANARY_FILE))
            reason = f"the candidate does not serve: {problem}" if problem else ""
        except canary.CanaryError as e:
            problem = reason = f"its canary request cannot be used, so the model was not tried: {e}"
        if problem:  # before a version is claimed: nothing ships that cannot be served
            logging.warning("Not pushed: %s", reason)
            print(f"Not pushed: {reason}", flush=True)
            self._MarkNotPushed(pushed)
            pushed.set_string_custom_property(NOT_PUSHED_KEY, reason)
            return
        blessing = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_BLESSING_KEY])
        after = blessing.get_int_custom_property(COMPARED_WITH_KEY) \
            if blessing.has_custom_property(COMPARED_WITH_KEY) else None
        try:
            version = version_dirs.push(model_path, serving_dir, {"model_uri": model.uri, "model_id": model.id},
                                   keep_last=int(custom.get("keep_last", 0)), after=after)
        except version_dirs.PushConflict as e:
            logging.warning("Not pushed: %s", e)
            print(f"Not pushed: {e}", flush=True)
            self._MarkNotPushed(pushed)
            pushed.set_string_custom_property(NOT_PUSHED_KEY, str(e))
            return
        destination_path = version_dirs.version_dir(serving_dir, version)
        logging.info("Model pushed to %s.", destination_path)
        self._MarkPushed(pushed, pushed_destination=destination_path, pushed_version=str(version))
        if custom.get("kserve") is not None and storage.is_remote(serving_dir):
            manifest = kserve_manifests.inference_service(serving_dir, version=version, pipeline_run=self._pipeline_run(),
                                                tf_version=tf_serving.saved_model_tf_version(model_path), **custom["kserve"])
            path = kserve_manifests.write_manifest(serving_dir, version, manifest)
            logging.info("KServe InferenceService for version %d: %s", version, path)
            pushed.set_string_custom_property(KSERVE_MANIFEST_KEY, path)

    def _pipeline_run(self):
        """The run that pushed, where the orchestrator says (the local runner does; KFP's launcher not)."""
        return getattr(self._context, "pipeline_run_id", None) if self._context else None


class VersionedPusher(pusher_component.Pusher):
    """TFX's Pusher component with the executor above."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(VersionedPusherExecutor)
