"""Evaluations beyond the clean test split: out-of-distribution detection (shift and attacks to come)."""
