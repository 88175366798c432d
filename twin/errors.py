"""The errors twin raises on purpose, and the one table that turns them into HTTP answers and CLI exit codes.

Every error a user can cause derives from :class:`TwinError` and names its :class:`Status`; the API's exception
handler and the CLI's error printer both read :data:`TABLE`, so the same fault gives the same answer everywhere
(an unknown branch is a 404 on every route and exit code 4 in the shell). Stages raise these errors; routers and
commands never re-wrap them.
"""

from __future__ import annotations

import errno
from enum import StrEnum
from typing import ClassVar, NamedTuple


class Status(StrEnum):
    """What kind of fault an error is, independent of how it is reported."""

    bad_input = "bad_input"  # the request or file is wrong: fix it and try again
    not_found = "not_found"  # the named thing (branch, version, entity, layer, tile) does not exist
    conflict = "conflict"  # the request clashes with the state of the store (exists already, stale edit)
    forbidden = "forbidden"  # the principal may not do or see this
    unauthorized = "unauthorized"  # no valid credentials were given
    busy = "busy"  # another writer holds the store: retry later
    unavailable = "unavailable"  # the server or machine cannot do it now (missing optional part, overloaded)
    storage = "storage"  # the store's disk refuses the write: full, read-only, no permission


class Answer(NamedTuple):
    http: int
    exit_code: int
    title: str


# one row per status: the HTTP status code, the CLI exit code (sysexits.h where one fits) and a short title
TABLE: dict[Status, Answer] = {
    Status.bad_input: Answer(400, 2, "Bad Request"),
    Status.not_found: Answer(404, 4, "Not Found"),
    Status.conflict: Answer(409, 5, "Conflict"),
    Status.forbidden: Answer(403, 77, "Forbidden"),  # EX_NOPERM
    Status.unauthorized: Answer(401, 77, "Unauthorized"),
    Status.busy: Answer(503, 75, "Service Unavailable"),  # EX_TEMPFAIL
    Status.unavailable: Answer(503, 69, "Service Unavailable"),  # EX_UNAVAILABLE
    Status.storage: Answer(503, 74, "Service Unavailable"),  # EX_IOERR
}


class TwinError(Exception):
    """Base of every error twin raises for a user to read; the message says what is wrong and where."""

    status: ClassVar[Status] = Status.bad_input

    @property
    def answer(self) -> Answer:
        return TABLE[self.status]


class BadInput(TwinError, ValueError):
    """A parameter, file or request that cannot be used as given."""

    status = Status.bad_input


class NotFound(TwinError, LookupError):
    """A named thing that does not exist."""

    status = Status.not_found


class Conflict(TwinError, ValueError):
    """A request that clashes with what the store holds."""

    status = Status.conflict


class Unauthorized(TwinError):
    """Credentials that were given but are not valid (unknown, expired, forged, revoked, disabled)."""

    status = Status.unauthorized


class Forbidden(TwinError):
    """An action or read the principal is not allowed."""

    status = Status.forbidden


class Unavailable(TwinError):
    """Something the server or machine cannot do now (busy store, full disk, missing optional component)."""

    status = Status.unavailable


class StorageError(Unavailable):
    """A write the disk refused (full, read-only, no permission); the message names the path and what to do."""

    status = Status.storage


# errno -> what an operator should be told; any other OSError is a bug or a lost file, not a storage condition
_STORAGE_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def storage_error(exc: BaseException, what: str = "") -> StorageError | None:
    """A :class:`StorageError` for an OSError that says the disk refused (ENOSPC, EDQUOT, EROFS, EACCES, EPERM),
    naming the file and ``what`` was being done; None for any other exception."""
    if not isinstance(exc, OSError) or exc.errno not in _STORAGE_ERRNOS:
        return None
    where = f" {exc.filename}" if exc.filename else ""
    doing = f" ({what})" if what else ""
    return StorageError(f"storage refused{where}{doing}: {_STORAGE_ERRNOS[exc.errno]}")


def answer_for(exc: BaseException) -> Answer | None:
    """The table row for an error twin raised on purpose or a storage condition (disk full, read-only), None for
    anything else (a bug: HTTP 500)."""
    if isinstance(exc, TwinError):
        return exc.answer
    err = storage_error(exc)
    return err.answer if err is not None else None
