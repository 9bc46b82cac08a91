"""Evaluation of frozen encoders: linear probe, kNN, retrieval, compatibility."""
