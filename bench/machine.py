"""What the benchmarks print about the machine they ran on (imported by the scripts beside it)."""


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo; "unknown CPU" where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "unknown CPU")
    except OSError:
        return "unknown CPU"
