"""Versioning records: commits, branches and the per-entity changelog."""

from typing import Literal

from pydantic import Field, model_validator

from .common import EntityId, Slug, TwinModel, UtcDatetime, utc_now

__all__ = ["Commit", "ChangeSummary", "Branch", "Change", "ChangeOp"]

ChangeOp = Literal["add", "modify", "remove"]


class ChangeSummary(TwinModel):
    added: int = Field(default=0, ge=0)
    modified: int = Field(default=0, ge=0)
    removed: int = Field(default=0, ge=0)

    @property
    def total(self) -> int:
        return self.added + self.modified + self.removed


class Commit(TwinModel):
    """One atomic write to a branch."""

    version: int = Field(ge=1)
    branch: Slug = "main"
    parent_version: int | None = Field(default=None, ge=1, description="previous version; None for the first")
    time: UtcDatetime = Field(default_factory=utc_now)
    author: str = Field(min_length=1)
    message: str = ""
    changes: ChangeSummary = Field(default_factory=ChangeSummary)

    @model_validator(mode="after")
    def _parent(self):
        if self.parent_version is not None and self.parent_version >= self.version:
            raise ValueError(
                f"parent_version ({self.parent_version}) must be less than version ({self.version})"
            )
        return self


class Branch(TwinModel):
    """A line of versions. ``main`` has no base; a scenario branch starts at ``base_branch`` @
    ``base_version``."""

    name: Slug
    base_branch: Slug | None = None
    base_version: int | None = Field(default=None, ge=1)
    created: UtcDatetime = Field(default_factory=utc_now)
    author: str = Field(min_length=1)
    description: str = ""

    @model_validator(mode="after")
    def _base(self):
        if self.base_version is not None and self.base_branch is None:
            raise ValueError("base_version is set but base_branch is not")
        if self.base_branch is not None and self.base_branch == self.name:
            raise ValueError(f"branch {self.name!r} cannot be based on itself")
        return self


class Change(TwinModel):
    """One changelog row: entity ``entity_id`` was added, modified or removed in ``version``."""

    version: int = Field(ge=1)
    entity_id: EntityId
    op: ChangeOp
