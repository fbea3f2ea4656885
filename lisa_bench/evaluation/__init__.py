"""Evaluation: lm-evaluation-harness tasks and MT-Bench judging."""
