"""Roles and what each may do: one table, read by the guard (writes) and the API (admin routes)."""

from __future__ import annotations

from enum import StrEnum

from data_models import Classification, Principal, Role


class Permission(StrEnum):
    read = "read"  # entities, layers, tiles, imagery, runs (within clearance and area)
    export = "export"  # products and CityJSON exports
    edit = "edit"  # scenarios: create, edit, dismiss
    simulate = "simulate"  # simulation runs and process jobs
    ingest = "ingest"  # ingest and build on main, branches
    admin = "admin"  # principals, audit log, keys


PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.viewer: frozenset({Permission.read}),
    Role.gis: frozenset({Permission.read, Permission.export}),
    Role.analyst: frozenset({Permission.read, Permission.export, Permission.edit, Permission.simulate}),
    Role.admin: frozenset(Permission),
}

ORDER = list(Classification)  # public < internal < confidential < secret


def permissions(principal: Principal) -> frozenset[Permission]:
    """The union of the principal's roles' permissions; none when it is disabled."""
    if principal.disabled:
        return frozenset()
    return frozenset().union(*(PERMISSIONS[r] for r in principal.roles))


def allows(principal: Principal, permission: Permission) -> bool:
    return permission in permissions(principal)


def levels_up_to(clearance: Classification) -> list[str]:
    """The classification names a clearance may read, lowest first."""
    return [c.value for c in ORDER[: ORDER.index(clearance) + 1]]


def parse_clearance(value: str, what: str = "clearance") -> Classification:
    """A classification name (case-insensitive) or a clear error listing the valid ones."""
    try:
        return Classification(value.strip().lower())
    except (ValueError, AttributeError):
        raise ValueError(f"{what}: {value!r} is not a classification; use one of "
                         f"{', '.join(c.value for c in ORDER)}") from None


def parse_role(value: str) -> Role:
    try:
        return Role(value.strip().lower())
    except (ValueError, AttributeError):
        raise ValueError(f"role: {value!r} is not a role; use one of {', '.join(r.value for r in Role)}") from None
