"""What a Kubernetes cluster and an object store accept: names, labels, quantities and bucket paths.

Each check returns what is wrong, in one line naming the flag, or "" (compile's `check_config`
raises it). The rules are apimachinery's validation and the stores' bucket naming.
"""

import os
import re


# Kubernetes names (apimachinery validation): namespaces are RFC 1123 labels, Secrets and
# ServiceAccounts RFC 1123 subdomains, and KServe takes an InferenceService name that is an RFC
# 1035 label (it becomes a Service's name). Bucket names as S3 takes them (GCS also takes "_").
_DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
DNS_1123_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_BUCKET = {"gs": re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]"), "s3": re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")}
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,511}")  # a reference: no spaces, quotes or newlines
# Kubernetes label keys ([DNS subdomain prefix/]name) and values (validation.IsQualifiedName, IsValidLabelValue).
_LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_RESOURCE_NAME = re.compile(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")


def location_problem(location: str, what: str) -> str:
    """What is wrong ("" if nothing) with a store location no store takes: a bucket name outside the naming
    rules, or a `.` or `..` segment (which would also lead the launcher's local copy of an
    artifact out of its folder)."""
    scheme, _, rest = location.partition("://")
    bucket, _, key = rest.partition("/")
    if not _BUCKET["gs" if scheme == "gs" else "s3"].fullmatch(bucket):
        return (f"{what} {location!r}: {bucket!r} is not a valid bucket name (3-63 lowercase letters, "
                           f"digits, dots and hyphens)")
    if any(segment in (".", "..") for segment in key.split("/")):
        return f"{what} {location!r}: '.' and '..' are not allowed in an object-store path"
    return ""


_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?|\.[0-9]+")  # the numbers of the quantities taken here: no sign, exponent, inf


def _number(text: str) -> float:
    if not _DECIMAL.fullmatch(text):
        raise ValueError(f"not a plain decimal number: {text!r}")
    return float(text)


def cpu_cores(text: str) -> float:
    """A Kubernetes CPU quantity ('2', '0.5', '500m') in cores."""
    return _number(text[:-1]) / 1000 if text.endswith("m") else _number(text)


def resources_problem(config) -> str:
    """What is wrong ("" if nothing) with a CompileConfig's requests, GPUs, node selector and tolerations."""
    for flag, value in (("--cpu", config.cpu), ("--trainer-cpu", config.trainer_cpu)):
        try:
            cores = cpu_cores(value)
        except ValueError:
            cores = float("nan")
        if not 0 < cores <= 1024:  # NaN too
            return f"{flag} {value!r}: expected CPU cores in (0, 1024], e.g. 2, 0.5 or 500m"
    for flag, value in (("--memory", config.memory), ("--trainer-memory", config.trainer_memory)):
        try:
            size = gigabytes(value)
        except ValueError:
            size = float("nan")
        if not 0 < size <= 65536:
            return f"{flag} {value!r}: expected a memory size up to 64Ti, e.g. 8G, 512Mi"
    if not 0 <= config.gpus <= 64:
        return f"--gpus {config.gpus}: expected 0 (CPU only) to 64"
    for key, value in config.trainer_node_selector:
        if not _LABEL_KEY.fullmatch(key) or not _LABEL_VALUE.fullmatch(value):
            return (f"--trainer-node-selector {key}={value}: not a Kubernetes label (KEY=VALUE: a "
                               f"[prefix/]name and a value of letters, digits, '-', '_', '.', at most 63 each)")
    for key, operator, value, effect in config.trainer_tolerations:
        if (key and not _LABEL_KEY.fullmatch(key)) or not _LABEL_VALUE.fullmatch(value) \
                or effect not in ("", "NoSchedule", "PreferNoSchedule", "NoExecute") or operator not in ("Equal", "Exists"):
            return (f"--trainer-toleration {key}={value}:{effect}: expected KEY[=VALUE][:EFFECT], EFFECT one "
                               f"of NoSchedule, PreferNoSchedule, NoExecute")
    if not _RESOURCE_NAME.fullmatch(config.accelerator):
        return f"--accelerator {config.accelerator!r}: not a Kubernetes resource name (e.g. nvidia.com/gpu)"
    return ""


def names_problem(config) -> str:
    """What is wrong ("" if nothing) with a CompileConfig's image, Kubernetes names and output path."""
    if not _IMAGE.fullmatch(config.image):
        return f"--image {config.image!r}: not an image reference (REGISTRY/NAME:TAG, no spaces or newlines)"
    for flag, value, pattern, kind in (
            ("--namespace", config.namespace, _DNS_1123_LABEL, "an RFC 1123 label"),
            ("--kserve-namespace", config.kserve_namespace, _DNS_1123_LABEL, "an RFC 1123 label"),
            ("--kserve-name", config.kserve_name, _DNS_1035_LABEL, "an RFC 1035 label (KServe's rule)"),
            ("--kserve-service-account", config.kserve_service_account, DNS_1123_SUBDOMAIN, "an RFC 1123 subdomain")):
        if value and not pattern.fullmatch(value):
            return (f"{flag} {value!r}: not a Kubernetes name: {kind}, lowercase letters, digits and "
                               f"'-', at most 63 characters")
    if os.path.isdir(config.output):
        return (f"--output {config.output}: a directory; name the file, e.g. "
                           f"{os.path.join(config.output, 'pipeline.yaml')}")
    return ""


def gigabytes(text: str) -> float:
    units = {"G": 1.0, "Gi": 1.073741824, "M": 1e-3, "Mi": 1.048576e-3}
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix):
            return _number(text[:-len(suffix)]) * units[suffix]
    raise ValueError(f"no unit: {text!r}")
