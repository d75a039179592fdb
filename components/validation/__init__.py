"""Validation: the curated schema and the DataChecks gate."""
