"""SIGNS components: the ExampleGen executor, baseline, evaluator, pusher, review and their helpers."""


def __getattr__(name):
    # The Kubeflow launcher finds custom artifact types by "<module>.<Class>": this is
    # `components.ReviewReport` and `components.DataFindings`, imported lazily so `import components` stays light.
    if name == "ReviewReport":
        from components.report.review import ReviewReport  # pylint: disable=import-outside-toplevel
        return ReviewReport
    if name == "DataFindings":
        from components.validation.data_checks import DataFindings  # pylint: disable=import-outside-toplevel
        return DataFindings
    raise AttributeError(f"module 'components' has no attribute {name!r}")
