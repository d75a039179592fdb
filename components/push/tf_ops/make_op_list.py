"""Writes the op names a TensorFlow release defines, from its wheel or an installed `tensorflow/` folder.

Every op a TensorFlow build registers has a generated Python wrapper (`tensorflow/python/**/gen_*.py`)
that names it in `_apply_op_helper("OpName", ...)`; the set of those names is the release's op set.

    pip download tensorflow-cpu==2.6.5 --no-deps --only-binary=:all: --python-version 3.9 \\
        --platform manylinux2010_x86_64 -d /tmp/tf26
    python components/push/tf_ops/make_op_list.py /tmp/tf26/tensorflow_cpu-2.6.5-*.whl > components/push/tf_ops/tf-2.6.ops
    python components/push/tf_ops/make_op_list.py .venv/lib/python3.10/site-packages > components/push/tf_ops/tf-2.16.ops
"""

import glob
import os
import re
import sys
import zipfile

OP = re.compile(r'_apply_op_helper\(\s*"([A-Za-z0-9_]+)"')


def op_names(source: str) -> set:
    names = set()
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as wheel:
            for member in wheel.namelist():
                if member.startswith("tensorflow/python/") and os.path.basename(member).startswith("gen_") \
                        and member.endswith(".py"):
                    names |= set(OP.findall(wheel.read(member).decode()))
    else:
        for path in glob.glob(os.path.join(source, "tensorflow", "python", "**", "gen_*.py"), recursive=True):
            with open(path, encoding="utf-8") as f:
                names |= set(OP.findall(f.read()))
    return names


def main(argv) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    names = op_names(argv[1])
    if not names:
        print(f"error: {argv[1]}: no generated op wrappers found", file=sys.stderr)
        return 1
    label = os.path.basename(argv[1].rstrip("/"))
    if os.path.isdir(argv[1]):
        label = ", ".join(os.path.basename(p) for p in glob.glob(os.path.join(argv[1], "tensorflow-*.dist-info"))) or label
    print(f"# {len(names)} ops, from {label} (components/push/tf_ops/make_op_list.py)")
    print("\n".join(sorted(names)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
