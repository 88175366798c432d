"""The audit log: an append-only, hash-chained record of every read of non-public data, export, write and admin
action, with Ed25519-signed checkpoints (issue 14; docs/security_audit.md).

Layout under the store directory::

    audit/log.jsonl          one canonical JSON record a line (sorted keys, compact separators, ASCII)
    audit/checkpoints.jsonl  signed checkpoints of the log's tail: {n, seq, hash, count, time, key, sig}
    audit/public.pem         the public key of the checkpoints (keep a copy and its fingerprint elsewhere)
    audit/.lock              the appenders' flock
    audit/torn.log           bytes of a write that was cut off (a crash mid-append), moved out of the log

Each record holds ``seq`` (0, 1, 2, … with no gap), ``time`` (RFC 3339 UTC, microseconds), ``principal``,
``action``, ``target`` (ids, a query or a path), ``client``, ``size``, ``result``, optionally ``extra``, then
``prev`` (the ``hash`` of the record before, 64 zeros for the first) and ``hash``: the SHA-256 of the record's
canonical JSON without ``hash``. Editing, deleting, inserting or moving a record breaks the chain at that record;
rewriting the whole chain is caught by a checkpoint signed with a private key kept outside the store.

The private key lives outside the store ($TWIN_AUDIT_KEY, else ``<secrets dir>/audit-<store key>.key``): whoever
can write the store cannot forge a checkpoint. Key, token and password material never reaches the log: values under
secret-looking names, PEM blocks, bearer tokens, JWTs, twin API keys' secrets and the signing key itself are
replaced by ``[redacted]`` before a record is hashed.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import threading
import time
import warnings
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twin.errors import BadInput, Conflict, NotFound, storage_error
from twin.store.files import write_private
from twin.times import to_utc

if TYPE_CHECKING:  # cryptography is imported where keys are used: appending needs none of it
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS = "0" * 64
LOG = "log.jsonl"
CHECKPOINTS = "checkpoints.jsonl"
PUBLIC = "public.pem"
ACTIONS = ("read", "export", "write", "admin", "login-failed")  # the usual ones; any name matching _ACTION is taken
REQUIRED = frozenset({"seq", "time", "principal", "action", "target", "client", "size", "result", "prev", "hash"})
OPTIONAL = frozenset({"extra"})
CHECKPOINT_FIELDS = frozenset({"n", "seq", "hash", "count", "time", "key", "sig"})
MAX_TARGET_CHARS = 16_384  # a bigger target (a huge id list) is kept as its digest, count and first ids
MAX_TEXT = 512  # principal, client, result
REDACTED = "[redacted]"

_ACTION = re.compile(r"^[a-z][a-z0-9._:-]{0,63}$")
_SECRET_NAME = re.compile(
    r"(?i)(?:^|[_\-.\s])(?:pass(?:word|wd|phrase)?|secret|token|api[_-]?key|apikey|key|authori[sz]ation|cookie|"
    r"credentials?|signature|private)$")
# applied to the canonical JSON text of a record: none of these can match a quote or a backslash-quote, so a match
# stays inside one JSON string and the replacement keeps the JSON valid
_SECRET_TEXT = re.compile(
    r"(?P<pem>-----BEGIN [A-Z0-9 ]{1,40}-----(?:[^\"\\]|\\.)*?(?:-----END [A-Z0-9 ]{1,40}-----|(?=\")))"
    r"|(?P<twin>\btwin_(?P<kid>[A-Za-z0-9]{12})_[A-Za-z0-9_-]{16,})"
    r"|(?P<jwt>\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*)"
    r"|(?P<scheme>(?i:\b(?:bearer|basic|token|digest|apikey))\s+)(?=[A-Za-z0-9._~+/=-]*[0-9A-Z+/=_~])"
    r"[A-Za-z0-9._~+/=-]{8,}"
    r"|(?P<param>(?i:[?&;](?:access_token|id_token|refresh_token|token|api_key|apikey|key|password|passwd|secret|"
    r"signature|sig|auth)=))[^&#\s\"\\]+")
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# ---------------------------------------------------------------------------------------------------- formats
def canonical(obj: Any) -> bytes:
    """The one byte form every record and checkpoint is hashed and signed in: sorted keys, no spaces, ASCII."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def record_hash(record: dict) -> str:
    """The SHA-256 (hex) of a record's canonical JSON without its ``hash`` field."""
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str | datetime | None, *, now: datetime | None = None) -> datetime | None:
    """An ISO 8601 time (``Z`` accepted; naive is UTC) or a span back from now (``90s``, ``15m``, ``24h``, ``7d``,
    ``2w``) as an aware UTC datetime; :class:`BadInput` for anything else."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        m = _RELATIVE.match(value.strip())
        if m:
            return (now or datetime.now(UTC)) - timedelta(seconds=float(m[1]) * _UNITS[m[2]])
    try:
        return to_utc(value)
    except ValueError:
        raise BadInput(f"not a time: {value!r} (ISO 8601 like 2025-06-01T08:00:00Z, or a span like 24h, 7d)") from None


# ---------------------------------------------------------------------------------------------------- redaction
def redact(value: Any, secrets: Iterable[str] = ()) -> Any:
    """``value`` with no key, token or password material: values under secret-looking names (``password``,
    ``token``, ``api_key``, ``authorization`` …) become ``[redacted]``, and so do PEM blocks, bearer/basic
    credentials, JWTs, the secret part of twin API keys (the public key id stays), secret URL parameters and any of
    ``secrets`` (exact strings, e.g. the signing key's encodings) wherever they occur."""
    value = _redact_names(value)
    text = _enc(value)
    clean = _redact_text(text, tuple(secrets))
    return value if clean == text else json.loads(clean)


def _enc(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


@functools.lru_cache(maxsize=4096)
def _secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


_SCALARS = (str, int, float, bool, type(None))


def _material(v: Any) -> bool:
    """Whether a value under a secret-looking name could carry a secret: not empty, not a flag."""
    return not (v is None or isinstance(v, bool) or v == "" or v == [] or v == {})


def _redact_names(value: Any) -> Any:
    """``value`` with the values under secret-looking names replaced (lists and dicts copied, scalars as they are)."""
    if isinstance(value, dict):
        return {k: (REDACTED if isinstance(k, str) and _secret_name(k) and _material(v) else _redact_names(v))
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        if all(type(v) in _SCALARS for v in value):  # the common case, a list of ids: nothing to walk
            return list(value)
        return [_redact_names(v) for v in value]
    return value


def _redact_text(text: str, secrets: tuple[str, ...]) -> str:
    for s in secrets:
        if s and s in text:
            text = text.replace(s, REDACTED)
    if not _MAYBE.search(text):  # the hot path: no hint of a secret, no full regex pass
        return text
    return _SECRET_TEXT.sub(_redacted, text)


_MAYBE = re.compile(r"-----BEGIN|twin_|eyJ|(?i:bearer|basic|token|digest|apikey|key=|password=|passwd=|secret=|"
                    r"sig=|signature=|auth=)")


def _redacted(m: re.Match) -> str:
    if m["twin"]:
        return f"twin_{m['kid']}_{REDACTED}"
    if m["scheme"]:
        return m["scheme"] + REDACTED
    if m["param"]:
        return m["param"] + REDACTED
    return REDACTED


def _bound_target(target: Any, text: str) -> Any:
    """A target whose JSON ``text`` is longer than :data:`MAX_TARGET_CHARS` kept as its SHA-256, size and first
    ids."""
    out: dict[str, Any] = {"truncated": True, "sha256": hashlib.sha256(text.encode()).hexdigest(),
                           "chars": len(text)}
    if isinstance(target, list):
        out["count"] = len(target)
        head: list[Any] = []
        used = 0
        for item in target:
            used += len(canonical(item)) + 1
            if used > MAX_TARGET_CHARS // 2:
                break
            head.append(item)
        out["head"] = head
    return out


def _text(name: str, value: Any, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise BadInput(f"audit record: {name} must be a non-empty string, got {value!r}")
    if len(value) > MAX_TEXT:
        raise BadInput(f"audit record: {name} is longer than {MAX_TEXT} characters")
    return value


# ---------------------------------------------------------------------------------------------------- keys
def fingerprint(public_key: Ed25519PublicKey) -> str:
    """The SHA-256 (hex) of the raw 32-byte public key: what checkpoints name and what a user keeps elsewhere."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def default_key_path(store_root: Path | str, secrets_dir: Path | str | None = None) -> Path:
    """Where the store's private signing key is kept: $TWIN_AUDIT_KEY, else ``audit-<store key>.key`` in the
    secrets directory (``secrets_dir``, else $TWIN_SECRETS_DIR, else $XDG_CONFIG_HOME/twin or ~/.config/twin)
    beside the token secret, never inside a store."""
    env = os.environ.get("TWIN_AUDIT_KEY", "").strip()
    if env:
        return Path(env).expanduser()
    from types import SimpleNamespace

    from twin.config import get_settings
    from twin.security.tokens import secrets_dir as machine_secrets
    from twin.store.files import store_key

    base = machine_secrets(secrets_dir or get_settings().secrets_dir)
    return base / f"audit-{store_key(SimpleNamespace(root=Path(store_root)))}.key"


def _inside_store(path: Path) -> Path | None:
    """The store directory ``path`` lies in (a folder above it holding STORE.json), or None."""
    for d in Path(os.path.abspath(path)).parents:
        if (d / "STORE.json").is_file():
            return d
    return None


def generate_key(path: Path | str, *, force: bool = False) -> Ed25519PrivateKey:
    """A new Ed25519 private key written to ``path`` as unencrypted PKCS#8 PEM, readable by its owner only (0600;
    folders made 0700). Refuses a path inside a store (whoever writes the store could then forge checkpoints) and an
    existing file unless ``force``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(path).expanduser()
    store = _inside_store(path)
    if store is not None:
        raise BadInput(f"{path} lies inside the store {store}: keep the audit signing key outside it "
                       "(anyone who can write the store could forge checkpoints with it)")
    if path.exists() and not force:
        raise Conflict(f"{path} exists already: it may sign this store's checkpoints; pass --force to replace it "
                       "(a key rotation)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(path, pem, replace=True)
    except OSError as exc:
        err = storage_error(exc, "writing the audit signing key")
        if err is not None:
            raise err from exc
        raise
    return key


def load_signing_key(path: Path | str) -> Ed25519PrivateKey:
    """The Ed25519 private key in ``path`` (PKCS#8 PEM or the raw 32 bytes); warns when others may read it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise NotFound(f"no audit signing key at {path}; make one with `twin audit keygen`") from None
    if mode & 0o077:
        warnings.warn(f"{path} is readable by others (mode {mode & 0o777:o}); chmod 600 it", stacklevel=2)
    if _inside_store(path) is not None:
        warnings.warn(f"{path} lies inside a store: whoever can write the store can forge its checkpoints",
                      stacklevel=2)
    if len(data) == 32:
        return Ed25519PrivateKey.from_private_bytes(data)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise BadInput(f"{path} is not an unencrypted Ed25519 private key (PEM or 32 raw bytes): {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BadInput(f"{path} holds a {type(key).__name__}, not an Ed25519 private key")
    return key


def load_public_key(source: Path | str | bytes | Ed25519PublicKey) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file (or PEM bytes, or the raw 32 bytes, or a private key's file: its
    public half)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    if isinstance(source, Ed25519PublicKey):
        return source
    where = "the given bytes"
    if isinstance(source, str | Path):
        where = str(source)
        try:
            source = Path(source).expanduser().read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no public key at {where}") from None
    if len(source) == 32:
        return Ed25519PublicKey.from_public_bytes(source)
    try:
        key: Any = serialization.load_pem_public_key(source)
    except ValueError:
        try:
            key = serialization.load_pem_private_key(source, password=None)
        except (ValueError, TypeError):
            raise BadInput(f"{where} is not an Ed25519 public key (PEM or 32 raw bytes)") from None
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise BadInput(f"{where} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def _public_pem(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _key_material(key: Ed25519PrivateKey) -> tuple[str, ...]:
    """Encodings of a private key that must never appear in the log: raw bytes as hex and base64, the PEM body."""
    from cryptography.hazmat.primitives import serialization

    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    body = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    b64 = base64.b64encode(raw).decode()
    return (raw.hex(), raw.hex().upper(), b64, b64.rstrip("="), base64.urlsafe_b64encode(raw).decode().rstrip("="),
            body)


# ---------------------------------------------------------------------------------------------------- verify
@dataclass
class VerifyReport:
    """What :meth:`AuditLog.verify` found: ``ok``, how many records it read, and for a failure what is wrong
    (``problem``), the line it was seen on (``line_no`` of ``file``) and ``first_bad_seq``: the first seq the log
    cannot vouch for (every record before it is intact and chained; for a rewrite caught by a checkpoint, the seq
    after the last checkpoint that matches; for a bad checkpoint, the seq it names; None for a wrong key)."""

    ok: bool
    records: int
    first_bad_seq: int | None = None
    line_no: int | None = None
    problem: str | None = None
    file: str | None = None
    checkpoints: int = 0  # checkpoints whose signature and hash were checked
    last_checkpoint_seq: int | None = None
    key: str | None = None  # the fingerprint checkpoints were checked against
    warnings: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.ok:
            cps = (f", {self.checkpoints} signed checkpoint(s) up to seq {self.last_checkpoint_seq}"
                   if self.checkpoints else "")
            return f"audit log ok: {self.records} record(s){cps}"
        where = f" ({self.file} line {self.line_no})" if self.line_no is not None else \
            f" ({self.file})" if self.file else ""
        return f"audit log FAILED{where}: {self.problem}"

    def as_dict(self) -> dict:
        return asdict(self)


class _Fail(Exception):
    def __init__(self, problem: str, seq: int | None, line: int | None, file: Path | str | None) -> None:
        super().__init__(problem)
        self.problem, self.seq, self.line, self.file = problem, seq, line, file


def _short(h: Any) -> str:
    return f"{h[:16]}…" if isinstance(h, str) and len(h) > 16 else repr(h)


# ---------------------------------------------------------------------------------------------------- the log
def audit_dir(root: Path) -> Path:
    """The folder of a store's log: ``<store>/audit``, or ``$TWIN_AUDIT_DIR/<store key>`` (for a store served
    read-only, or a log kept on its own volume)."""
    given = os.environ.get("TWIN_AUDIT_DIR", "").strip()
    if not given:
        return root / "audit"
    from types import SimpleNamespace

    from twin.store.files import store_key

    return Path(given).expanduser() / store_key(SimpleNamespace(root=root))


def writable(log: AuditLog) -> str:
    """Why records cannot be appended to ``log`` ('' when they can): a server answers no signed-in principal
    then, since its reads of non-public data could not be traced."""
    try:
        log._mkdir()
    except Exception as exc:  # noqa: BLE001 - any reason is the answer
        return str(exc)
    if not os.access(log.dir, os.W_OK) or (log.log_path.exists() and not os.access(log.log_path, os.W_OK)):
        return f"the audit log {log.dir} is not writable for this server (set TWIN_AUDIT_DIR to a writable folder)"
    return ""


_INSTANCES: weakref.WeakSet[AuditLog] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A forked child starts with one thread: a lock another thread of the parent held at the fork is made anew."""
    for log in list(_INSTANCES):
        log._thread_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


class AuditCorrupt(Conflict):
    """The log's last record cannot be read, so no record can be chained to it: `twin audit verify` says why."""


class AuditLog:
    """The audit log of one store directory (``<root>/audit/``). Safe to append from many threads and processes.

    ``signing_key``: with a key, a signed checkpoint is written every ``checkpoint_every`` records and at least
    every ``checkpoint_interval`` seconds while records are unsigned. ``fsync``: force each record to the disk
    (a few ms a record on real disks); by default a record reaches the OS with one write() (it survives a crash of
    the process, not a power loss) and the log is fsynced at each checkpoint."""

    def __init__(self, root: Path | str, *, signing_key: Ed25519PrivateKey | None = None,
                 checkpoint_every: int = 1000, checkpoint_interval: float = 3600.0, fsync: bool = False) -> None:
        if checkpoint_every < 1 or checkpoint_interval <= 0:
            raise BadInput("checkpoint_every must be ≥ 1 and checkpoint_interval > 0")
        self.root = Path(root)
        self.dir = audit_dir(self.root)
        self.log_path = self.dir / LOG
        self.checkpoints_path = self.dir / CHECKPOINTS
        self.public_path = self.dir / PUBLIC
        self.lock_path = self.dir / ".lock"
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self.fsync = fsync
        self.signing_key = signing_key
        self._secrets: tuple[str, ...] = _key_material(signing_key) if signing_key is not None else ()
        self._thread_lock = threading.Lock()
        self._pid = -1
        self._lock_fd = -1
        self._log_fd = -1
        self._tail_cache: tuple[int, int, int, str] | None = None  # (inode, size, last seq, last hash)
        self._cp_cache: tuple[int, int, int, float, int] | None = None  # (inode, size, count, unix time, n)
        self._cp_known: tuple[int, float] = (0, 0.0)  # (count, unix time) of the newest checkpoint seen
        self._timer: threading.Timer | None = None
        _INSTANCES.add(self)

    @classmethod
    def open(cls, root: Path | str, secrets_dir: Path | str | None = None, **kwargs: Any) -> AuditLog:
        """The store's log with its signing key when one exists at :func:`default_key_path` (a server's way in)."""
        path = default_key_path(root, secrets_dir)
        key = load_signing_key(path) if path.is_file() else None
        return cls(root, signing_key=key, **kwargs)

    def close(self) -> None:
        """Sign the unsigned tail (with a key) or fsync the log, and close the files; appending opens them again."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with self._thread_lock:
            if self._pid == os.getpid() and self._log_fd >= 0:
                with contextlib.suppress(Exception), self._locked_files():
                    if self.signing_key is not None:
                        _, seq, _, _ = self._tail()
                        if seq + 1 > self._last_checkpoint()[0]:
                            self._checkpoint_locked(self.signing_key)
                    else:
                        os.fsync(self._log_fd)
            for fd in (self._log_fd, self._lock_fd):
                if fd >= 0 and self._pid == os.getpid():
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._log_fd = self._lock_fd = -1
            self._tail_cache = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- locking and files
    def _reset_after_fork(self) -> None:
        """File descriptors inherited over fork() share one lock with the parent: a child opens its own."""
        if self._pid != os.getpid():
            for fd in (self._lock_fd, self._log_fd) if self._pid != -1 else ():
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)  # the parent's copies; its flock stays with its own descriptor
            self._pid = os.getpid()
            self._lock_fd = self._log_fd = -1
            self._tail_cache = self._cp_cache = None
            self._cp_known = (0, 0.0)
            self._timer = None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The thread lock, then the flock of ``audit/.lock`` (between processes)."""
        with self._thread_lock, self._locked_files():
            yield

    @contextlib.contextmanager
    def _locked_files(self) -> Iterator[None]:
        self._reset_after_fork()
        if self._lock_fd < 0:
            self._mkdir()
            self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _mkdir(self) -> None:
        try:
            self.dir.mkdir(exist_ok=True)
        except FileNotFoundError:
            raise NotFound(f"{self.root}: no such store directory") from None
        except OSError as exc:
            err = storage_error(exc, "creating the audit folder")
            if err is not None:
                raise err from exc
            raise

    def _tail(self) -> tuple[int, int, str, int]:
        """The log's descriptor (O_APPEND; opened again when the file was removed or replaced meanwhile), the last
        record's seq and hash ((-1, zeros) for an empty log) and the file's size: read from the end of the file,
        never the whole of it. A cut-off last line (a crash mid-write) is moved to ``torn.log``."""
        fd = self._log_fd
        st = os.fstat(fd) if fd >= 0 else None
        if st is None or st.st_nlink == 0:  # nlink 0: removed or renamed over (cheaper than a stat of the path)
            if fd >= 0:
                os.close(fd)
            fd = self._log_fd = os.open(self.log_path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            st = os.fstat(fd)
            self._tail_cache = None
        c = self._tail_cache
        if c is not None and c[0] == st.st_ino and c[1] == st.st_size:
            return fd, c[2], c[3], st.st_size
        size = st.st_size
        if size == 0:
            return fd, -1, GENESIS, 0
        last = os.pread(fd, 1, size - 1)
        if last != b"\n":
            size = self._repair_torn(fd, size)
            if size == 0:
                return fd, -1, GENESIS, 0
        line = _last_line(fd, size)
        try:
            rec = json.loads(line)
            seq, h = rec["seq"], rec["hash"]
            if type(seq) is not int or not isinstance(h, str) or len(h) != 64:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise AuditCorrupt(f"{self.log_path}: the last record cannot be read, so nothing can be chained to it; "
                               "see `twin audit verify`") from None
        self._tail_cache = (st.st_ino, size, seq, h)
        return fd, seq, h, size

    def _repair_torn(self, fd: int, size: int) -> int:
        """A last line without its newline: a whole record gets its newline, a cut-off one moves to torn.log."""
        start = size
        while start > 0:
            chunk = os.pread(fd, min(65536, start), max(0, start - 65536))
            i = chunk.rfind(b"\n")
            if i >= 0:
                start = max(0, start - 65536) + i + 1
                break
            start = max(0, start - 65536)
        torn = os.pread(fd, size - start, start)
        try:
            rec = json.loads(torn)
            whole = isinstance(rec, dict) and canonical(rec) == torn and record_hash(rec) == rec.get("hash")
        except ValueError:
            whole = False
        if whole:
            os.write(fd, b"\n")
            return size + 1
        with open(self.dir / "torn.log", "ab") as f:
            f.write(f"{now_rfc3339()} {start} ".encode() + torn + b"\n")
        os.ftruncate(fd, start)
        return start

    # -------------------------------------------------------------- appending
    def append(self, principal: str, action: str, target: str | list[str] | dict | None, *, client: str | None,
               size: int | None, result: str = "ok", extra: dict | None = None) -> dict:
        """Write one record and return it (with its seq, time, prev and hash). ``target``: the ids read, the query
        or what was changed; ``client``: where from (address, user agent, "cli"); ``size``: the result's size
        (rows, bytes: what the caller counts). Key, token and password material is redacted first."""
        body, head, mid, rest = self._body(principal, action, target, client, size, result, extra)
        with self._locked():
            fd, seq, prev, before = self._tail()
            t = now_rfc3339()
            # the canonical JSON put together from the pre-encoded parts (keys in sorted order), once without hash
            # and once with it: the same bytes as canonical(record), at a fraction of the cost under the lock
            tail = f'{mid},"seq":{seq + 1}{rest},"time":"{t}"}}'
            h = hashlib.sha256(f'{head},"prev":"{prev}{tail}'.encode()).hexdigest()
            line = f'{head},"hash":"{h}","prev":"{prev}{tail}\n'.encode()
            rec = {**body, "seq": seq + 1, "time": t, "prev": prev, "hash": h}
            try:
                _write_all(fd, line)
                if self.fsync:
                    os.fsync(fd)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, before)  # no half record in the log
                self._tail_cache = None
                err = storage_error(exc, "appending to the audit log")
                if err is not None:
                    raise err from exc
                raise
            self._tail_cache = (os.fstat(fd).st_ino if self._tail_cache is None else self._tail_cache[0],
                                before + len(line), seq + 1, h)
            if self.signing_key is not None:
                self._auto_checkpoint(seq + 2)
        return rec

    def _body(self, principal: Any, action: Any, target: Any, client: Any, size: Any, result: Any,
              extra: Any) -> tuple[dict, str, str, str]:
        """The checked, redacted fields as a dict, and as three pieces of canonical JSON: up to ``prev``, from
        ``prev``'s closing quote to ``seq``, from ``seq`` to ``time``."""
        _text("principal", principal, required=True)
        if not isinstance(action, str) or not _ACTION.match(action):
            raise BadInput(f"audit record: action must be a lower-case name like {', '.join(ACTIONS)}; got {action!r}")
        _text("client", client, required=False)
        _text("result", result, required=True)
        if size is not None and (type(size) is not int or size < 0):
            raise BadInput(f"audit record: size must be a whole number ≥ 0 or None, got {size!r}")
        if target is not None and not isinstance(target, str | list | tuple | dict):
            raise BadInput(f"audit record: target must be a string, a list of ids or a dict, got "
                           f"{type(target).__name__}")
        if extra is not None and not isinstance(extra, dict):
            raise BadInput(f"audit record: extra must be a dict, got {type(extra).__name__}")
        body: dict[str, Any] = {"principal": principal, "client": client, "result": result}
        try:
            body["target"] = _redact_names(target)
            if extra:
                body["extra"] = _redact_names(extra)
            enc = {k: _enc(v) for k, v in body.items()}
        except (TypeError, ValueError) as exc:
            raise BadInput(f"audit record: target and extra must be plain JSON values: {exc}") from None
        for k, text in enc.items():
            clean = _redact_text(text, self._secrets)
            if clean != text:
                enc[k], body[k] = clean, json.loads(clean)
        if len(enc["target"]) > MAX_TARGET_CHARS:
            body["target"] = _bound_target(body["target"], enc["target"])
            enc["target"] = _enc(body["target"])
        body["action"], body["size"] = action, size
        head = f'{{"action":"{action}","client":{enc["client"]}' + (f',"extra":{enc["extra"]}' if extra else "")
        mid = f'","principal":{enc["principal"]},"result":{enc["result"]}'
        rest = f',"size":{"null" if size is None else size},"target":{enc["target"]}'
        return body, head, mid, rest

    # -------------------------------------------------------------- checkpoints
    def _last_checkpoint(self) -> tuple[int, float, int]:
        """(count, unix time, n) of the last checkpoint in the store's file; (0, 0, -1) when there is none."""
        try:
            st = os.stat(self.checkpoints_path)
        except FileNotFoundError:
            self._cp_cache = None
            return 0, 0.0, -1
        c = self._cp_cache
        if c is not None and c[0] == st.st_ino and c[1] == st.st_size:
            return c[2], c[3], c[4]
        with open(self.checkpoints_path, "rb") as f:
            line = _last_line(f.fileno(), st.st_size) if st.st_size else b""
        try:
            cp = json.loads(line)
            count, t, n = int(cp["count"]), to_utc(cp["time"]).timestamp(), int(cp["n"])
        except (ValueError, KeyError, TypeError, AttributeError):
            count, t, n = 0, 0.0, -1
        self._cp_cache = (st.st_ino, st.st_size, count, t, n)
        self._cp_known = (count, t)
        return count, t, n

    def _auto_checkpoint(self, count: int) -> None:
        """Under the lock, after a record: checkpoint when ``checkpoint_every`` records or ``checkpoint_interval``
        seconds passed since the last one; else make sure a timer will sign the unsigned tail in time."""
        last_count, last_time = self._cp_known  # what this process last saw: others' checkpoints only add to it
        now = time.time()
        due = count - last_count >= self.checkpoint_every or now - last_time >= self.checkpoint_interval
        if due:  # look at the file: another process may have signed meanwhile
            last_count, last_time, _ = self._last_checkpoint()
            self._cp_known = (last_count, last_time)
            due = count - last_count >= self.checkpoint_every or now - last_time >= self.checkpoint_interval
        if count <= last_count:
            return
        waited = now - last_time
        if due:
            try:
                self._checkpoint_locked(self.signing_key)
            except Exception as exc:  # the record is written; the next append or the timer tries again
                warnings.warn(f"audit checkpoint failed: {exc}", stacklevel=3)
            return
        if self._timer is None or not self._timer.is_alive():
            self._timer = threading.Timer(max(0.0, self.checkpoint_interval - waited) + 0.01, self._on_timer)
            self._timer.daemon = True
            self._timer.start()

    def _on_timer(self) -> None:
        self._timer = None
        with contextlib.suppress(Exception), self._locked():
            _, seq, _, _ = self._tail()
            self._auto_checkpoint(seq + 1)

    def checkpoint(self, signing_key: Ed25519PrivateKey | None = None) -> dict:
        """Sign {n, seq, hash, count, time, key} of the log's current tail with Ed25519 and append it to
        ``checkpoints.jsonl``; writes ``public.pem`` when the store has none. Returns the entry."""
        key = signing_key or self.signing_key
        if key is None:
            raise BadInput("no audit signing key: make one with `twin audit keygen`")
        with self._locked():
            return self._checkpoint_locked(key)

    def _checkpoint_locked(self, key: Ed25519PrivateKey) -> dict:
        fp = fingerprint(key.public_key())
        self._check_public(key.public_key(), fp)
        fd, seq, h, _ = self._tail()
        os.fsync(fd)  # what is signed is on the disk first
        _, _, n = self._last_checkpoint()
        entry: dict[str, Any] = {"n": n + 1, "seq": seq, "hash": h, "count": seq + 1, "time": now_rfc3339(),
                                 "key": fp}
        entry["sig"] = base64.b64encode(key.sign(canonical(entry))).decode()
        try:
            cfd = os.open(self.checkpoints_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                _write_all(cfd, canonical(entry) + b"\n")
                os.fsync(cfd)
            finally:
                os.close(cfd)
            self._cp_known = (entry["count"], time.time())
        except OSError as exc:
            err = storage_error(exc, "writing an audit checkpoint")
            if err is not None:
                raise err from exc
            raise
        return entry

    def _check_public(self, public: Ed25519PublicKey, fp: str) -> None:
        if self.public_path.is_file():
            have = fingerprint(load_public_key(self.public_path))
            if have != fp:
                raise Conflict(f"{self.public_path} holds key {have[:16]}…, not the signing key {fp[:16]}…: sign "
                               "with the store's key, or rotate with `twin audit keygen --force`")
            return
        self.install_public_key(public)

    def install_public_key(self, public: Ed25519PublicKey, *, force: bool = False) -> Path:
        """Write ``public.pem``. A different key already there is kept unless ``force`` (a rotation): then it and
        the checkpoints it signed move to ``audit/retired/<time>-<fingerprint>-…``."""
        fp = fingerprint(public)
        self._mkdir()
        if self.public_path.is_file():
            have = fingerprint(load_public_key(self.public_path))
            if have == fp:
                return self.public_path
            if not force:
                raise Conflict(f"{self.public_path} holds another key ({have[:16]}…); pass --force to rotate "
                               "(its checkpoints move to audit/retired/)")
            retired = self.dir / "retired"
            retired.mkdir(exist_ok=True)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            for p in (self.public_path, self.checkpoints_path):
                if p.exists():
                    os.replace(p, retired / f"{stamp}-{have[:16]}-{p.name}")
            self._cp_cache = None
            self._cp_known = (0, 0.0)
        tmp = self.dir / f".{PUBLIC}.{os.getpid()}.tmp"
        tmp.write_bytes(_public_pem(public))
        os.replace(tmp, self.public_path)
        return self.public_path

    # -------------------------------------------------------------- reading
    def read(self, *, since: str | datetime | None = None, until: str | datetime | None = None,
             principal: str | None = None, action: str | None = None, limit: int | None = None,
             after: int | None = None, before: int | None = None, newest_first: bool = False) -> Iterator[dict]:
        """Records as plain dicts (ready for JSON), streamed from the file: oldest first, or ``newest_first``
        (read from the end backwards). ``since`` ≤ time < ``until`` (ISO 8601 or a span like ``24h``);
        ``principal`` and ``action`` match exactly; ``after`` / ``before`` bound seq (exclusive), cursors for
        paging. Lines that are not records are skipped here (``verify`` reports them)."""
        if limit is not None and limit < 0:
            raise BadInput(f"limit must be ≥ 0, got {limit}")
        lo_t, hi_t = parse_time(since), parse_time(until)  # None (or an empty string): no bound
        lo = _rfc3339(lo_t) if lo_t is not None else None
        hi = _rfc3339(hi_t) if hi_t is not None else None
        if limit == 0 or not self.log_path.is_file():
            return iter(())
        return self._read(lo, hi, principal, action, limit, after, before, newest_first)

    def _read(self, lo, hi, principal, action, limit, after, before, newest_first) -> Iterator[dict]:
        n = 0
        lines = _reverse_lines(self.log_path) if newest_first else _forward_lines(self.log_path)
        for line in lines:
            try:
                rec = json.loads(line)
                seq, t = rec["seq"], rec["time"]
            except (ValueError, KeyError, TypeError):
                continue
            if after is not None and seq <= after:
                if newest_first:
                    break
                continue
            if before is not None and seq >= before:
                if newest_first:
                    continue
                break
            if (lo is not None and t < lo) or (hi is not None and t >= hi):
                continue
            if (principal is not None and rec.get("principal") != principal) or (
                    action is not None and rec.get("action") != action):
                continue
            yield rec
            n += 1
            if limit is not None and n >= limit:
                return

    def tail(self, limit: int, **filters: Any) -> list[dict]:
        """The newest ``limit`` records matching ``filters`` (as :meth:`read`), oldest first."""
        return list(reversed(list(self.read(limit=limit, newest_first=True, **filters))))

    def checkpoints(self) -> list[dict]:
        """The store's checkpoint entries as written (unverified)."""
        if not self.checkpoints_path.is_file():
            return []
        out = []
        with open(self.checkpoints_path, "rb") as f:
            for raw in f:
                with contextlib.suppress(ValueError):
                    out.append(json.loads(raw))
        return out

    # -------------------------------------------------------------- verifying
    def verify(self, *, public_key: Path | str | bytes | Ed25519PublicKey | Iterable[Any] | None = None,
               checkpoints: Path | str | Iterable[Path | str] | None = None,
               kept_fingerprint: str | None = None) -> VerifyReport:
        """Check the whole log: every record's hash, the chain of ``prev``, consecutive seqs, and each checkpoint's
        signature and hash. ``public_key``: a key kept outside the store (else ``audit/public.pem``);
        ``checkpoints``: kept copies of checkpoint files, checked as well as the store's own; ``kept_fingerprint``: the
        kept fingerprint the store's public key must have. Several public keys (a list) are accepted for the
        checkpoints of a rotated key. Stops at the first problem and names its seq and line."""
        report = VerifyReport(ok=True, records=0)
        try:
            self._verify(report, public_key, checkpoints, kept_fingerprint)
        except _Fail as f:
            report.ok, report.problem, report.first_bad_seq, report.line_no = False, f.problem, f.seq, f.line
            report.file = str(f.file) if f.file is not None else None
        return report

    def _verify(self, report: VerifyReport, public_key, kept, fp_kept) -> None:
        # 1. the keys checkpoints are checked against: the kept ones (several after a rotation), else the store's
        in_store = load_public_key(self.public_path) if self.public_path.is_file() else None
        if public_key is not None:
            given = [public_key] if isinstance(public_key, str | Path | bytes) or not isinstance(
                public_key, Iterable) else list(public_key)
            keys = {fingerprint(k): k for k in map(load_public_key, given)}
            if in_store is not None and fingerprint(in_store) not in keys:
                raise _Fail(f"{PUBLIC} was replaced: it holds key {fingerprint(in_store)[:16]}…, the kept public key "
                            f"is {' or '.join(f[:16] + '…' for f in keys)}", None, None, self.public_path)
            current = in_store if in_store is not None else next(iter(keys.values()))
        else:
            keys = {fingerprint(in_store): in_store} if in_store is not None else {}
            current = in_store
        fp = fingerprint(current) if current is not None else None
        report.key = fp
        if fp_kept is not None:
            want = fp_kept.strip().lower().removeprefix("sha256:")
            if fp is None:
                raise _Fail(f"no public key to compare with the kept fingerprint {want[:16]}… ({PUBLIC} is missing)",
                            None, None, self.public_path)
            if not fp.startswith(want) or len(want) < 16:
                raise _Fail(f"the public key's fingerprint {fp[:16]}… is not the kept fingerprint {want[:16]}…",
                            None, None, self.public_path)

        # 2. every checkpoint: well formed, signed by that key
        files = [self.checkpoints_path] if self.checkpoints_path.is_file() else []
        if kept is not None:
            kept_files = [Path(kept)] if isinstance(kept, str | Path) else [Path(p) for p in kept]
            for p in kept_files:
                if not p.is_file():
                    raise NotFound(f"no checkpoint file at {p}")
            files += kept_files
        by_seq: dict[int, list[tuple[dict, Path, int]]] = {}
        signed: set[str] = set()
        for path in files:
            for line_no, entry in _read_checkpoints(path):
                name = f"checkpoint {entry.get('n', '?')}" if isinstance(entry, dict) else "a checkpoint"
                if not isinstance(entry, dict) or set(entry) != CHECKPOINT_FIELDS:
                    raise _Fail(f"{name} is malformed (not the fields {sorted(CHECKPOINT_FIELDS)})", None, line_no,
                                path)
                if not keys:
                    raise _Fail(f"{name} cannot be checked: no public key ({PUBLIC} is missing; pass the kept one "
                                "with --public-key)", None, line_no, path)
                key = keys.get(entry["key"]) if isinstance(entry["key"], str) else None
                if key is None:
                    raise _Fail(f"{name} signature invalid: signed by key {_short(entry['key'])}, the public key is "
                                f"{' or '.join(f[:16] + '…' for f in keys)}", entry.get("seq"), line_no, path)
                if not _signature_ok(key, entry):
                    raise _Fail(f"{name} signature invalid", entry.get("seq"), line_no, path)
                if type(entry["seq"]) is not int or entry["count"] != entry["seq"] + 1:
                    raise _Fail(f"{name} is inconsistent: count {entry['count']} for seq {entry['seq']}",
                                entry.get("seq"), line_no, path)
                by_seq.setdefault(entry["seq"], []).append((entry, path, line_no))
                signed.add(entry["sig"])

        # 3. the log, streamed: each record's hash, seq and prev, and every checkpoint that names its seq
        expected, prev, line_no = 0, GENESIS, 0
        last_ok_cp = -1
        log = self.log_path
        lines = _forward_lines(log, keep_ends=True) if log.is_file() else iter(())
        for raw in lines:
            line_no += 1
            rec = _parse_record(raw, expected, line_no, log)
            seq = rec["seq"]
            if record_hash(rec) != rec["hash"]:
                what = f"record {seq}" if seq == expected else f"record at line {line_no} (claims seq {seq!r})"
                raise _Fail(f"{what} edited (hash mismatch)", expected, line_no, log)
            if canonical(rec) + b"\n" != raw:
                raise _Fail(f"record {seq} edited (the line is not in canonical form)", expected, line_no, log)
            if seq > expected:
                found = _find_seq(lines, expected, line_no)
                if found is not None:
                    raise _Fail(f"record {expected} reordered: it is at line {found}, after record {seq} (line "
                                f"{line_no})", expected, line_no, log)
                gap = f"{expected}" if seq == expected + 1 else f"{expected}–{seq - 1}"
                jump = f"seq jumps {expected - 1} → {seq}" if expected else f"the log starts at seq {seq}"
                raise _Fail(f"record {gap} missing ({jump})", expected, line_no, log)
            if seq < expected:
                # record expected-1 is the only one no successor vouches for yet: a twin of it may be the fake
                bad = seq if seq == expected - 1 else expected
                raise _Fail(f"record {seq} inserted or reordered: seq {seq} at line {line_no} follows seq "
                            f"{expected - 1} (seq {seq} is also at line {seq + 1})", bad, line_no, log)
            if rec["prev"] != prev:
                # record seq-1 is the first one nothing vouches for: edited with a recomputed hash, or seq is new
                if not seq:
                    raise _Fail("record 0 inserted or edited (prev is not the genesis value)", 0, line_no, log)
                raise _Fail(f"record {seq} inserted or reordered, or record {seq - 1} edited with a recomputed hash "
                            f"(prev does not match record {seq - 1})", seq - 1, line_no, log)
            for entry, path, cp_line in by_seq.get(seq, ()):
                if entry["hash"] != rec["hash"]:
                    since = f"seq {last_ok_cp + 1}–{seq}" if last_ok_cp >= 0 else f"seq 0–{seq}"
                    raise _Fail(f"log rewritten: checkpoint {entry['n']} at seq {seq} ({path.name} line {cp_line}) "
                                f"signs hash {_short(entry['hash'])}, the log has {_short(rec['hash'])} (records "
                                f"{since} were altered; the log matches its checkpoints before)",
                                last_ok_cp + 1, line_no, log)
                last_ok_cp = seq
            prev = rec["hash"]
            expected += 1
            report.records = expected
        if by_seq:
            top = max(by_seq)
            if top >= expected:
                entry, path, _ = by_seq[top][0]
                end = f"ends at {expected - 1}" if expected else "is empty"
                raise _Fail(f"log truncated: checkpoint {entry['n']} at seq {top} but the log {end}", expected,
                            line_no + 1, log)
            report.checkpoints = len(signed)  # a kept copy of a checkpoint the store holds counts once
            report.last_checkpoint_seq = top
            if top < expected - 1:
                report.warnings.append(f"records {top + 1}–{expected - 1} come after the last checkpoint: their "
                                       "deletion from the tail would not be detected")
            if kept is not None and not self.checkpoints_path.is_file():
                report.warnings.append(f"the store's {CHECKPOINTS} is missing (only the kept copies were checked)")
        elif expected:
            report.warnings.append("no checkpoints: a rewrite of the whole log or a cut tail would not be detected "
                                   "(make a key with `twin audit keygen`)")
        if keys and public_key is None and kept is None and fp_kept is None:
            report.warnings.append(f"checked against the store's own {PUBLIC}: pass a kept copy (--public-key) or "
                                   "checkpoints (--checkpoints) to detect a rewrite of the log and its key together")


def _parse_record(raw: bytes, expected: int, line_no: int, log: Path) -> dict:
    if not raw.endswith(b"\n"):
        raise _Fail(f"line {line_no} is incomplete (no newline: a write cut off, or an edit)", expected, line_no, log)
    try:
        rec = json.loads(raw)
    except ValueError:
        rec = None
    if not isinstance(rec, dict):
        raise _Fail(f"line {line_no} is not a record (not a JSON object): inserted or edited", expected, line_no, log)
    keys = set(rec)
    if not REQUIRED <= keys or not keys <= REQUIRED | OPTIONAL:
        odd = sorted((REQUIRED - keys) | (keys - REQUIRED - OPTIONAL))
        raise _Fail(f"record at line {line_no} edited (fields {odd} missing or unexpected)", expected, line_no, log)
    if type(rec["seq"]) is not int or not isinstance(rec["hash"], str):
        raise _Fail(f"record at line {line_no} edited (seq or hash of the wrong type)", expected, line_no, log)
    return rec


def _find_seq(lines: Iterator[bytes], seq: int, line_no: int) -> int | None:
    """The line number, further on, of a record with ``seq`` (the failure path of verify only)."""
    for i, raw in enumerate(lines, start=line_no + 1):
        try:
            if json.loads(raw).get("seq") == seq:
                return i
        except (ValueError, AttributeError):
            continue
    return None


def _signature_ok(key: Ed25519PublicKey, entry: dict) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        sig = base64.b64decode(entry["sig"], validate=True)
        key.verify(sig, canonical({k: v for k, v in entry.items() if k != "sig"}))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _read_checkpoints(path: Path) -> Iterator[tuple[int, Any]]:
    with open(path, "rb") as f:
        for i, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                raise _Fail(f"checkpoint at line {i} is not JSON", None, i, path) from None
            yield i, entry


# ---------------------------------------------------------------------------------------------------- file helpers
def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _last_line(fd: int, size: int) -> bytes:
    """The last line of the first ``size`` bytes of a file ending in a newline, read backwards in blocks."""
    end = size - 1  # the final newline
    pos, chunks = end, []
    while pos > 0:
        n = min(4096, pos)
        chunk = os.pread(fd, n, pos - n)
        i = chunk.rfind(b"\n")
        if i >= 0:
            chunks.append(chunk[i + 1:])
            break
        chunks.append(chunk)
        pos -= n
    return b"".join(reversed(chunks))


def _forward_lines(path: Path, keep_ends: bool = False) -> Iterator[bytes]:
    with open(path, "rb", buffering=1 << 20) as f:
        for line in f:
            if keep_ends:
                yield line
            elif line.strip():
                yield line


def _reverse_lines(path: Path, block: int = 1 << 16) -> Iterator[bytes]:
    """The lines of a file last first, read in blocks from the end (a log of any size, little memory)."""
    with open(path, "rb") as f:
        pos = f.seek(0, os.SEEK_END)
        rest = b""
        while pos > 0:
            n = min(block, pos)
            pos -= n
            f.seek(pos)
            parts = (f.read(n) + rest).split(b"\n")
            rest = parts[0]
            for line in reversed(parts[1:]):
                if line.strip():
                    yield line
        if rest.strip():
            yield rest

