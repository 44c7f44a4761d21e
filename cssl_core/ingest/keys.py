"""Keyed pseudonyms for patients and series.

A plain hash of a PatientID can be reversed by hashing candidate IDs, so keys are HMAC-SHA256 under a
site secret. The secret comes from `CSSL_KEY_SECRET` (hex or any string) or from a git-ignored file
(`CSSL_SECRET_FILE`, default `.cssl/secret.key` under the working directory) created on first use.
Losing the secret only means new keys on the next ingest; leaking it allows re-identification by
guessing, so it never goes into outputs, logs or MLflow.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

SECRET_ENV = "CSSL_KEY_SECRET"
SECRET_FILE_ENV = "CSSL_SECRET_FILE"
DEFAULT_SECRET_FILE = Path(".cssl") / "secret.key"
KEY_HEX_CHARS = 16


def secret_file_path() -> Path:
    return Path(os.environ.get(SECRET_FILE_ENV, DEFAULT_SECRET_FILE))


def load_secret() -> bytes:
    """Return the site secret, creating the secret file (mode 0600) on first use."""
    from_env = os.environ.get(SECRET_ENV)
    if from_env:
        return from_env.encode("utf-8")
    path = secret_file_path()
    if path.exists():
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    return value.encode("utf-8")


def keyed_hash(secret: bytes, kind: str, value: str) -> str:
    """Pseudonym for `value` within namespace `kind` ("patient", "series", ...)."""
    digest = hmac.new(secret, f"{kind}\x1f{value}".encode(), hashlib.sha256).hexdigest()
    return f"{kind[0]}{digest[:KEY_HEX_CHARS]}"
