"""Loaded by pytest before any test module: the tests run TensorFlow as the entry points do."""

from components.data import startup

startup.enable()  # before any test imports TensorFlow
