"""Evaluation: lm-eval task files, suites and gates (not yet provided by this release)."""
