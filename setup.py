"""Packages signs-pipeline so a container image (or `make`) can install it."""

from setuptools import find_packages, setup

setup(
    name="signs-pipeline",
    version="0.1.0",
    description="TFX pipeline that trains, evaluates and pushes a ResNet50 on SIGNS hand signs.",
    packages=find_packages(include=["common", "pipeline", "pipeline.*", "components", "components.*", "trainer", "kubeflow",
                                    "bench"]),
    # The review page's Jinja2 template, read next to components/report/render.py.
    package_data={"components.report": ["*.j2"], "pipeline.rest_server": ["*.j2"], "components.push.tf_ops": ["*.ops"]},
    python_requires=">=3.10,<3.11",
    # The locked versions live in requirements.lock; these are the direct needs.
    install_requires=["tfx[kfp]==1.16.0", "keras>=3.0", "h5py", "pillow", "matplotlib", "jinja2"],
    entry_points={"console_scripts": ["signs-pipeline=pipeline.local_runner:main"]},
)
