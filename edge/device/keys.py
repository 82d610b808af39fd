"""`orin-unlearn keys new`: the Ed25519 key pair that signs bundles, and the signing itself.

A bundle's checksums catch corruption, not tampering: whoever can change a weight can recompute
`bundle.json`. So the build machine signs the exact bytes of `bundle.json` with a private key
that never leaves it, and the Jetson unpacks only bundles whose signature its copy of the public
key accepts.

    orin-unlearn keys new --out ~/.config/orin-unlearn          # kiosk.key (0600) + kiosk.pub
    orin-unlearn bundle runs/demo --out kiosk.tar --sign ~/.config/orin-unlearn/kiosk.key
    orin-unlearn bundle --unpack kiosk.tar --into /opt/orin-unlearn/demo --trust kiosk.pub

The trusted key is `--trust PUB`, else the file named by $ORIN_UNLEARN_TRUST_KEY, else
/etc/orin-unlearn/trusted.pub when it is installed; with none of them unpacking checks
checksums only and warns that the bundle's origin is not verified.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from orin_unlearn.edge.errors import BundleError

TRUST_ENV = "ORIN_UNLEARN_TRUST_KEY"
INSTALLED_TRUST_KEY = Path("/etc/orin-unlearn/trusted.pub")
ALGORITHM = "ed25519"


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """sha256 of the raw 32-byte public key, in hex: the name of a key in messages and signatures."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def new_keypair(out_dir: str | Path, name: str = "kiosk") -> tuple[Path, Path]:
    """Write `out_dir/NAME.key` (PKCS#8 PEM, mode 0600) and `out_dir/NAME.pub` (PEM).

    Raises BundleError when either file already exists: a key is never overwritten.
    """
    out_dir = Path(out_dir)
    private, public = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    for path in (private, public):
        if path.exists():
            raise BundleError(
                f"{path} already exists; not overwriting a key (choose another --out or --name)"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.chmod(private, 0o600)  # in case the umask left less
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise BundleError(f"cannot read the {what} {path}: {e.strerror or e}") from None


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in PEM file `path`; BundleError naming the file otherwise."""
    data = _read(path, "signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise BundleError(f"{path} is not an unencrypted PEM private key: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path} holds a {type(key).__name__}, not an Ed25519 key (orin-unlearn keys new)")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """The Ed25519 public key in PEM file `path`; BundleError naming the file otherwise."""
    data = _read(path, "trusted key")
    if b"PRIVATE KEY" in data:
        raise BundleError(
            f"{path} is a private key; trust the .pub file (keep the private key off the device)"
        )
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise BundleError(f"{path} is not a PEM public key: {e}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"{path} holds a {type(key).__name__}, not an Ed25519 key (orin-unlearn keys new)")
    return key


def trusted_key_path(explicit: str | Path | None = None) -> Path | None:
    """The trusted public key: `explicit`, else $ORIN_UNLEARN_TRUST_KEY, else the installed one."""
    if explicit:
        return Path(explicit)
    if os.environ.get(TRUST_ENV):
        return Path(os.environ[TRUST_ENV])
    return INSTALLED_TRUST_KEY if INSTALLED_TRUST_KEY.is_file() else None


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    """The signature document (JSON bytes) over exactly `data`."""
    doc = {
        "algorithm": ALGORITHM,
        "key_sha256": fingerprint(key.public_key()),
        "signature": base64.b64encode(key.sign(data)).decode("ascii"),
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def read_signature(doc: bytes, where: str) -> dict[str, Any]:
    """Parse a signature document; BundleError naming `where` when it is malformed."""
    try:
        sig = json.loads(doc)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{where} is not valid JSON: {e}") from None
    if not isinstance(sig, dict) or sig.get("algorithm") != ALGORITHM:
        raise BundleError(f"{where} is not an {ALGORITHM} signature document")
    if not isinstance(sig.get("key_sha256"), str) or not isinstance(sig.get("signature"), str):
        raise BundleError(f"{where} lacks the string fields 'key_sha256' and 'signature'")
    try:
        sig["raw"] = base64.b64decode(sig["signature"], validate=True)
    except (binascii.Error, ValueError) as e:
        raise BundleError(f"{where}: the signature is not base64: {e}") from None
    return sig


def verify(trusted: Ed25519PublicKey, data: bytes, doc: bytes, where: str) -> str:
    """Check that `doc` (from `where`) signs exactly `data` with `trusted`; returns its fingerprint.

    Raises BundleError saying whether another key signed it or the signed bytes were changed.
    """
    sig = read_signature(doc, where)
    want = fingerprint(trusted)
    if sig["key_sha256"] != want:
        raise BundleError(
            f"{where}: signed by key {sig['key_sha256'][:16]}, not by the trusted key {want[:16]}"
        )
    try:
        trusted.verify(sig["raw"], data)
    except InvalidSignature:
        raise BundleError(
            f"{where}: the signature does not verify with the trusted key {want[:16]}: the index was "
            "changed after signing, or another key signed it"
        ) from None
    return want


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="orin-unlearn keys new", description=__doc__)
    parser.add_argument("--out", required=True, help="folder for NAME.key (private, 0600) and NAME.pub")
    parser.add_argument("--name", default="kiosk", help="file name stem (default kiosk)")
    args = parser.parse_args(argv)
    private, public = new_keypair(args.out, args.name)
    print(f"wrote {private} (private: keep it on the build machine) and {public} (copy this to the Jetson)")
    print(f"key sha256 {fingerprint(load_public_key(public))}")
    return 0
