"""Append-only, hash-chained record of every step: the source of truth for audits."""

from .chain import Event, Ledger, VerifyReport, canonical_json

__all__ = ["Event", "Ledger", "VerifyReport", "canonical_json"]
