"""Data in: storage, source readers, the synthetic set, and the ExampleGen executor."""
