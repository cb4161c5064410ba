"""Lookalike stage: perceptual fingerprints and a Hamming-distance index of reference images."""
