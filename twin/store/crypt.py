"""Encryption at rest: the store key (from ``TWIN_KEY`` or ``TWIN_KEY_FILE``, never kept in the store) and the sealed
file format, AES-256-GCM in chunks (see docs/security_encryption.md).

A sealed file is a 24-byte header — ``TWINSEAL``, format 1, the key id (4 bytes), a random nonce prefix (7 bytes),
the chunk size (4 bytes) — then the plaintext in chunks of at most ``chunk`` bytes, each AES-256-GCM encrypted with
the nonce ``prefix | chunk number (4 bytes) | last flag (1 byte)`` and the header plus the file's role (``segment
00000003``) as associated data (the STREAM construction): a chunk cut off, reordered, moved to another file or
altered fails authentication. The AES key is derived from the store key with HKDF-SHA256; the key id is the first 4
bytes of HMAC-SHA256(key, "twin-key-id"), enough to tell a wrong key from a corrupt file, and useless for finding
the key. Neither message nor ``repr`` of anything here ever holds key material.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

from twin.errors import BadInput, Unavailable

KEY_BYTES = 32
MAGIC = b"TWINSEAL"
FORMAT = 1
_HEADER = struct.Struct(">8sB4s7sI")  # magic, format, key id, nonce prefix, chunk size
HEADER_BYTES = _HEADER.size
CHUNK = 1 << 20
_TAG = 16
_URLSAFE = str.maketrans("-_", "+/")
HOW = "set TWIN_KEY (base64 of 32 bytes) or TWIN_KEY_FILE (a file holding them: `twin keys generate FILE`)"


class KeyInvalid(BadInput):
    """A key (file, variable or argument) that is not 32 bytes, raw or base64; the message never shows it."""


class KeyMissing(Unavailable):
    """Encrypted data must be read or written and this process has no key."""


class KeyMismatch(Unavailable):
    """The key given is not the one the store's encrypted data was sealed with."""


class SealBroken(Unavailable):
    """A sealed file that fails authentication with the right key: truncated, corrupt or tampered with."""


class Key:
    """A 32-byte store key. ``str``/``repr`` show only its id; the bytes stay inside this object."""

    def __init__(self, raw: bytes, source: str = "key") -> None:
        if not isinstance(raw, bytes | bytearray) or len(raw) != KEY_BYTES:
            raise KeyInvalid(f"{source}: a key is {KEY_BYTES} bytes, got {len(raw) if raw is not None else 0}")
        self._raw = bytes(raw)
        self.source = source

    @cached_property
    def id(self) -> str:
        """8 hex digits naming the key (HMAC-SHA256(key, "twin-key-id")); what the store records."""
        return hmac.new(self._raw, b"twin-key-id", hashlib.sha256).hexdigest()[:8]

    @cached_property
    def _aead(self):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        data_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"twin-store-seal-v1").derive(self._raw)
        return AESGCM(data_key)

    def __repr__(self) -> str:
        return f"Key(id={self.id}, from {self.source})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key) and hmac.compare_digest(self._raw, other._raw)

    def __hash__(self) -> int:
        return hash(self.id)

    def __reduce__(self):  # never pickled (a worker process reads the key from its own environment)
        raise TypeError("a twin Key is not picklable")

    # ------------------------------------------------------------------ where keys come from
    @classmethod
    def parse(cls, data: bytes | str, source: str) -> Key:
        """A key from 32 raw bytes or their base64 (standard or URL-safe, padding optional, surrounding whitespace
        ignored); anything else is :class:`KeyInvalid` saying what was wrong, not what was given."""
        if isinstance(data, bytes) and len(data) == KEY_BYTES:
            return cls(data, source)
        text = data.decode("ascii", "replace") if isinstance(data, bytes) else data
        text = "".join(text.split())
        if not text:
            raise KeyInvalid(f"{source} is empty; a key is {KEY_BYTES} bytes, raw or base64 (44 characters)")
        raw = None
        if len(text) <= 128:
            try:  # URL-safe letters read as the standard ones; padding may be left off
                raw = base64.b64decode(text.translate(_URLSAFE) + "=" * (-len(text) % 4), validate=True)
            except (binascii.Error, ValueError):
                raw = None
        if raw is None:
            raise KeyInvalid(f"{source} has the wrong length or format: it holds {len(data)} bytes; a key is "
                             f"{KEY_BYTES} raw bytes or their base64 (44 characters; `twin keys generate FILE`)")
        if len(raw) != KEY_BYTES:
            raise KeyInvalid(f"{source} has the wrong length: its base64 decodes to {len(raw)} bytes, a key is "
                             f"{KEY_BYTES} (`twin keys generate FILE` makes one)")
        return cls(raw, source)

    @classmethod
    def load(cls, path: Path | str) -> Key:
        """A key from a file (32 raw bytes or base64)."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyInvalid(f"key file {path} does not exist") from None
        except IsADirectoryError:
            raise KeyInvalid(f"key file {path} is a folder") from None
        except OSError as exc:
            raise KeyInvalid(f"key file {path} cannot be read: {exc.strerror}") from None
        return cls.parse(data, f"key file {path}")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Key | None:
        """The key of ``TWIN_KEY`` (base64) or ``TWIN_KEY_FILE`` (a path), None when neither is set; both at once
        is an error (which would win is a guess)."""
        env = os.environ if environ is None else environ
        text, file = env.get("TWIN_KEY", "").strip(), env.get("TWIN_KEY_FILE", "").strip()
        if text and file:
            raise KeyInvalid("both TWIN_KEY and TWIN_KEY_FILE are set: set one of them")
        if file:
            return cls.load(file)
        if text:
            return cls.parse(text, "TWIN_KEY")
        return None

    @classmethod
    def generate(cls) -> Key:
        return cls(os.urandom(KEY_BYTES), "generated")

    def text(self) -> str:
        """The key as base64 (what ``twin keys generate`` writes): only for writing a key file."""
        return base64.b64encode(self._raw).decode("ascii")

    # ------------------------------------------------------------------ sealing
    def seal(self, plaintext: bytes | memoryview, role: str, chunk: int = CHUNK) -> bytes:
        """``plaintext`` sealed for a file whose role (e.g. ``segment 00000003``) is ``role``."""
        header = _HEADER.pack(MAGIC, FORMAT, bytes.fromhex(self.id), os.urandom(7), chunk)
        return header + b"".join(self._chunks(header, role, memoryview(plaintext), chunk))

    def _chunks(self, header: bytes, role: str, view: memoryview, chunk: int) -> Iterator[bytes]:
        aad = header + role.encode()
        prefix = header[13:20]
        n = max(1, -(-len(view) // chunk))
        for i in range(n):
            nonce = prefix + struct.pack(">IB", i, i == n - 1)
            yield self._aead.encrypt(nonce, bytes(view[i * chunk:(i + 1) * chunk]), aad)

    def unseal(self, data: bytes, role: str, where: str) -> bytes:
        """The plaintext of a sealed file; a file sealed by another key is :class:`KeyMismatch`, one that fails
        authentication :class:`SealBroken` (``where`` names the file in both)."""
        from cryptography.exceptions import InvalidTag

        if len(data) < HEADER_BYTES or not data.startswith(MAGIC):
            raise SealBroken(f"{where} is not a sealed twin file (no TWINSEAL header)")
        magic, fmt, kid, prefix, chunk = _HEADER.unpack_from(data)
        if fmt != FORMAT:
            raise SealBroken(f"{where}: sealed file format {fmt} is not supported (this twin reads {FORMAT})")
        if kid.hex() != self.id:
            raise KeyMismatch(f"the key does not match: {where} was encrypted with key {kid.hex()}, the key given "
                              f"({self.source}) has id {self.id}")
        header, aad = data[:HEADER_BYTES], data[:HEADER_BYTES] + role.encode()
        body = memoryview(data)[HEADER_BYTES:]
        step = chunk + _TAG
        n = max(1, -(-len(body) // step))
        out = []
        try:
            for i in range(n):
                nonce = header[13:20] + struct.pack(">IB", i, i == n - 1)
                out.append(self._aead.decrypt(nonce, bytes(body[i * step:(i + 1) * step]), aad))
        except InvalidTag:
            raise SealBroken(f"{where} fails authentication with key {self.id}: it is truncated, corrupt or was "
                             "altered") from None
        return b"".join(out)


def key_id_of(data: bytes) -> str | None:
    """The key id in a sealed file's header, None when it has none."""
    if len(data) < HEADER_BYTES or not data.startswith(MAGIC):
        return None
    return _HEADER.unpack_from(data)[2].hex()
