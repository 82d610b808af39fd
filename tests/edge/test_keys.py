"""Bundle signing keys: made once, never overwritten, private key unreadable by others, and every
malformed key file a one-line error naming it."""

from __future__ import annotations

import stat

import pytest

from orin_unlearn.edge.cli import main as cli
from orin_unlearn.edge.device import keys
from orin_unlearn.edge.errors import BundleError


def test_keys_new_writes_a_private_key_only_its_owner_reads(tmp_path, capsys):
    assert cli(["keys", "new", "--out", str(tmp_path / "k")]) == 0
    private, public = tmp_path / "k" / "kiosk.key", tmp_path / "k" / "kiosk.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in private.read_bytes() and b"BEGIN PUBLIC KEY" in public.read_bytes()
    signing, trusted = keys.load_private_key(private), keys.load_public_key(public)
    doc = keys.sign(signing, b"index bytes")
    assert keys.verify(trusted, b"index bytes", doc, "x.sig") == keys.fingerprint(trusted)
    with pytest.raises(BundleError, match="changed after signing"):
        keys.verify(trusted, b"index bytes!", doc, "x.sig")
    assert keys.fingerprint(trusted) in capsys.readouterr().out


def test_keys_new_refuses_to_overwrite(tmp_path, capsys):
    keys.new_keypair(tmp_path)
    before = (tmp_path / "kiosk.key").read_bytes()
    assert cli(["keys", "new", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "kiosk.key already exists" in err and err.count("\n") == 1
    assert (tmp_path / "kiosk.key").read_bytes() == before


def test_another_key_is_named_as_the_wrong_signer(tmp_path):
    one, two = keys.new_keypair(tmp_path, "one"), keys.new_keypair(tmp_path, "two")
    doc = keys.sign(keys.load_private_key(one[0]), b"data")
    with pytest.raises(BundleError, match="not by the trusted key"):
        keys.verify(keys.load_public_key(two[1]), b"data", doc, "x.sig")


@pytest.mark.parametrize(
    "content, loader, message",
    [
        (None, keys.load_public_key, "cannot read the trusted key"),
        (None, keys.load_private_key, "cannot read the signing key"),
        (
            b"-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n",
            keys.load_public_key,
            "not a PEM",
        ),
        (b"hello", keys.load_private_key, "not an unencrypted PEM private key"),
    ],
)
def test_missing_and_malformed_key_files_name_the_file(tmp_path, content, loader, message):
    path = tmp_path / "key.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BundleError, match=message) as err:
        loader(path)
    assert str(path) in str(err.value)


def test_a_private_key_is_refused_as_trusted_key(tmp_path):
    private, _ = keys.new_keypair(tmp_path)
    with pytest.raises(BundleError, match="is a private key"):
        keys.load_public_key(private)


def test_trusted_key_comes_from_flag_then_environment_then_installed_file(tmp_path, monkeypatch):
    installed = tmp_path / "trusted.pub"
    monkeypatch.setattr(keys, "INSTALLED_TRUST_KEY", installed)
    monkeypatch.delenv(keys.TRUST_ENV, raising=False)
    assert keys.trusted_key_path() is None
    installed.write_text("x")
    assert keys.trusted_key_path() == installed
    monkeypatch.setenv(keys.TRUST_ENV, str(tmp_path / "env.pub"))
    assert keys.trusted_key_path() == tmp_path / "env.pub"
    assert keys.trusted_key_path(tmp_path / "flag.pub") == tmp_path / "flag.pub"
