"""A stand-in for a KMS/HSM at the true boundary: the key lives here, never in Estampille's
process configuration; Estampille only hands it bytes to sign (ES256, DER signature)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

calls: list[int] = []


def sign(data: bytes) -> bytes:
    key = serialization.load_pem_private_key(Path(os.environ["FAKE_KMS_KEY"]).read_bytes(), None)
    calls.append(len(data))
    return key.sign(data, ec.ECDSA(hashes.SHA256()))
