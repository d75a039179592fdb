"""Loaded by pytest before any test module: the tests run TensorFlow as the entry points do."""

from trainer import onednn

onednn.enable()  # before any test imports TensorFlow
