"""Evaluation: the serving model as baseline, the baseline-aware Evaluator and its metrics."""
