"""Evaluation: lm-eval task families and suites, the paired non-inferiority gate, the report."""
