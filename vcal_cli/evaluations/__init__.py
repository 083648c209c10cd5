"""Evaluations beyond the clean test split: distribution shift, adversarial attacks, OOD detection, the frontier."""
