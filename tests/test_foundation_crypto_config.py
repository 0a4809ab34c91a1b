"""Secrets round trip and key rotation; configuration errors name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from server import crypto
from server.config import ConfigError, load_settings


def test_secret_round_trip_and_rotation() -> None:
    old, new = crypto.generate_key(), crypto.generate_key()
    v_old = crypto.Vault((old,))
    token = v_old.encrypt("s3cr3t-password")
    assert "s3cr3t" not in token
    assert v_old.decrypt(token) == "s3cr3t-password"
    rotated_vault = crypto.Vault((new, old))  # new key first, old still readable
    assert rotated_vault.decrypt(token) == "s3cr3t-password"
    rotated = rotated_vault.rotate(token)
    assert crypto.Vault((new,)).decrypt(rotated) == "s3cr3t-password"
    with pytest.raises(crypto.SecretKeyError):
        crypto.Vault((new,)).decrypt(token)  # not re-encrypted: needs the old key


def test_tokens_are_stored_as_hashes() -> None:
    t = crypto.new_token("api")
    h = crypto.hash_token(t)
    assert t not in h and len(h) == 64
    assert crypto.token_matches(t, h)
    assert not crypto.token_matches(t + "x", h)
    pw = crypto.hash_password("correct horse")
    assert crypto.verify_password(pw, "correct horse")
    assert not crypto.verify_password(pw, "wrong horse")
    assert not crypto.verify_password(None, "anything")


def test_secret_key_generated_once_into_data_dir(tmp_path: Path) -> None:
    keys = crypto.ensure_secret_keys(tmp_path, ())
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    assert crypto.ensure_secret_keys(tmp_path, ()) == keys
    assert crypto.ensure_secret_keys(tmp_path, ("given",)) == ("given",)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"KILN_DATABASE_URL": "mysql://x/y"}, "KILN_DATABASE_URL"),
        ({"KILN_DATABASE_URL": "postgres://h:notaport/db"}, "KILN_DATABASE_URL"),
        ({"KILN_PORT": "eighty"}, "KILN_PORT"),
        ({"KILN_PORT": "70000"}, "KILN_PORT"),
        ({"KILN_OBJECT_STORE": "ftp://x"}, "KILN_OBJECT_STORE"),
        ({"KILN_OBJECT_STORE": "s3://A_B"}, "KILN_OBJECT_STORE"),
        ({"KILN_SECRET_KEY": "not-a-key"}, "KILN_SECRET_KEY"),
        ({"KILN_LAUNCHER": "docker"}, "KILN_LAUNCHER"),
        ({"KILN_LOG_ARCHIVE_AFTER": "soon"}, "KILN_LOG_ARCHIVE_AFTER"),
        ({"KILN_TLS_CERT": "/nonexistent.pem"}, "KILN_TLS_CERT"),
        ({"KILN_RUN_SLOTS": "0"}, "KILN_RUN_SLOTS"),
    ],
)
def test_invalid_settings_name_the_setting(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    message = str(err.value)
    assert message.startswith(names)
    assert "\n" not in message


def test_defaults_and_overrides(tmp_path: Path) -> None:
    s = load_settings({"KILN_DATA_DIR": str(tmp_path), "KILN_LOG_ARCHIVE_AFTER": "2m"})
    assert s.embedded and s.port == 8580 and s.host == "127.0.0.1"
    assert s.object_store == (tmp_path / "objects").as_uri()
    assert s.log_archive_after == 120.0
    s3 = load_settings(
        {"KILN_OBJECT_STORE": "s3://kiln-art/prod/x", "KILN_S3_ENDPOINT_URL": "http://minio:9000"},
        port=9999,
    )
    assert s3.s3 is not None and s3.s3.bucket == "kiln-art" and s3.s3.prefix == "prod/x"
    assert s3.port == 9999


def test_secret_key_creation_race_has_one_winner(tmp_path: Path) -> None:
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        keys = list(ex.map(lambda _: crypto.ensure_secret_keys(tmp_path, ()), range(16)))
    assert len(set(keys)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]
