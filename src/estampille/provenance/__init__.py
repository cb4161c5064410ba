"""Provenance stage: IPTC XMP, then a signed C2PA manifest, then a JSON sidecar."""
