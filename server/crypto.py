"""Secrets at rest: encrypted credential fields, hashed tokens and passwords.

* Credential fields are encrypted with Fernet under ``KILN_SECRET_KEY``, a
  comma-separated list of keys, newest first (MultiFernet): new values are
  encrypted with the first key, old values decrypt with any, and
  :func:`rotate` re-encrypts a value under the newest key.
* Tokens (API, run, develop-session) are random, shown once, and stored as a
  SHA-256 of the token: they carry 256 bits of entropy, so a fast hash is
  enough and lookups stay an index hit.
* Passwords are low-entropy and get argon2.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from functools import lru_cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

TOKEN_PREFIXES = {"api": "kiln_", "run": "kilnrun_", "ide": "kilnide_", "session": "kilnses_"}
_hasher = PasswordHasher()


class SecretKeyError(Exception):
    """The secret key is missing or cannot decrypt a value."""


def parse_keys(raw: str) -> tuple[str, ...]:
    from server.config import ConfigError

    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    for k in keys:
        try:
            Fernet(k.encode())
        except (ValueError, TypeError):
            raise ConfigError(
                "KILN_SECRET_KEY: each key must be a urlsafe base64 Fernet key "
                "(generate one with `kiln admin generate-key`)"
            ) from None
    return keys


def ensure_secret_keys(data_dir: Path, configured: tuple[str, ...]) -> tuple[str, ...]:
    """Configured keys, else the key file under the data dir, created on first start.

    Several processes may start on a fresh data dir at once: the key is written
    to a private temporary file and hard-linked into place, so exactly one key
    wins and nobody ever reads a half-written file.
    """
    if configured:
        return configured
    path = data_dir / "secret.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / f".secret.key.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(Fernet.generate_key().decode() + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race: use its key
        finally:
            tmp.unlink(missing_ok=True)
    return parse_keys(path.read_text())


@lru_cache(maxsize=8)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise SecretKeyError("no secret key configured (KILN_SECRET_KEY)")
    return MultiFernet([Fernet(k.encode()) for k in keys])


class Vault:
    """Encrypts and decrypts secret fields with the configured keys."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._f = _fernet(tuple(keys))

    def encrypt(self, plaintext: str) -> str:
        return self._f.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._f.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise SecretKeyError(
                "a stored secret cannot be decrypted with KILN_SECRET_KEY (was the key replaced "
                "instead of rotated?)"
            ) from None

    def rotate(self, ciphertext: str) -> str:
        """Re-encrypt under the newest key."""
        try:
            return self._f.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise SecretKeyError("a stored secret cannot be decrypted for rotation") from None


def generate_key() -> str:
    return Fernet.generate_key().decode()


def new_token(kind: str = "api") -> str:
    return TOKEN_PREFIXES[kind] + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, token_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), token_hash)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        # Spend comparable time so a missing user is not distinguishable by timing.
        _hasher.hash(password)
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
