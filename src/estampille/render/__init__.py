"""Render stage: the model registry and licence gate, the tiny test model, seeded rendering."""
