"""Estampille: weekly AI social-media visuals that never lose track of where they came from."""

__version__ = "0.1.0"
