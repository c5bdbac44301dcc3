"""A fleet: the repositories that ``mendflow fleet run`` sends to a work pool (``fleet.yaml``).

::

    repositories:
      - url: https://example.org/acme/api.git   # or file:// or a local path
        branch: main
        config: {}                              # optional per-repository overrides
    limits: {concurrent_missions: 4}

Each repository becomes one mission flow run; ``config`` is a partial mendflow
config (the README's Configuration block) merged over the defaults (and over the
fleet-wide ``config``). Every bad input is a :class:`~mendflow.core.errors.FleetError`
that names the file and the field.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mendflow.core.config import read_yaml, validate_config
from mendflow.core.errors import ConfigError, FleetError

_SAFE = re.compile(r"[^a-z0-9]+")


def normalize_url(url: str) -> str:
    """The canonical form of a repository location, for naming its lock and cache.

    A local path becomes an absolute ``file://`` URL; a trailing ``/`` or
    ``.git`` and the scheme/host case are dropped, so ``https://Host/a/b.git``
    and ``https://host/a/b`` name the same repository.

    Args:
        url: a git URL (``https://``, ``ssh://``, ``git@host:path``, ``file://``) or a path.

    Returns:
        The normalized location (a string).
    """
    text = url.strip()
    if "://" not in text and not re.match(r"^[\w.-]+@[\w.-]+:", text):
        text = Path(text).expanduser().resolve().as_uri()
    parts = urlsplit(text)
    if parts.scheme:
        text = f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path}"
    text = text.rstrip("/")
    return text[:-4] if text.endswith(".git") else text


def repository_key(url: str) -> str:
    """A short, stable, name-safe key of a repository: ``<last path part>-<12 hex digits>``.

    Args:
        url: a git URL or a path (see :func:`normalize_url`).

    Returns:
        Lowercase ``[a-z0-9-]``, at most 45 characters (a concurrency limit, a
        directory and a tag are named with it).
    """
    canonical = normalize_url(url)
    stem = _SAFE.sub("-", canonical.rsplit("/", 1)[-1].rsplit(":", 1)[-1].lower()).strip("-")
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return f"{stem[:32] or 'repo'}-{digest}"


class FleetLimits(BaseModel):
    """Fleet-wide limits.

    Attributes:
        concurrent_missions: missions of this fleet running at once, across all
            workers (a Prefect global concurrency limit, ``mendflow-fleet-<name>``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    concurrent_missions: int = Field(4, ge=1, le=1000, description="missions running at once")


class FleetRepository(BaseModel):
    """One repository of a fleet.

    Attributes:
        url: a git URL (``https://``, ``ssh://``, ``file://``) or a local path that
            every worker can clone.
        branch: the branch the mission starts from (its mission branch is pushed back).
        config: partial mendflow config for this repository (validated on load).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(min_length=1, description="git URL or path")
    branch: str = Field("main", min_length=1, description="the branch to maintain")
    config: dict[str, Any] = Field(default_factory=dict, description="config overrides")

    @field_validator("branch")
    @classmethod
    def _branch_is_a_name(cls, value: str) -> str:
        if value.startswith("-") or any(c in value for c in " ~^:?*[\\") or ".." in value:
            raise ValueError(f"{value!r} is not a git branch name")
        return value

    @property
    def key(self) -> str:
        """The repository's key (:func:`repository_key`)."""
        return repository_key(self.url)


class Fleet(BaseModel):
    """A fleet of repositories (``fleet.yaml``).

    Attributes:
        name: the fleet's name (the file's stem unless given): it tags the flow runs.
        repositories: at least one; a repository may appear once.
        limits: fleet-wide limits.
        config: partial mendflow config applied to every repository (under each one's own).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("fleet", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="fleet name")
    repositories: tuple[FleetRepository, ...] = Field(min_length=1)
    limits: FleetLimits = FleetLimits()
    config: dict[str, Any] = Field(default_factory=dict, description="config for every repository")

    def repository_config(self, repository: FleetRepository) -> dict[str, Any]:
        """The config overrides of one repository: the fleet's, then its own (deep-merged)."""
        return deep_merge(self.config, repository.config)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in, mappings recursively (neither is changed)."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _field(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse_fleet(data: Any, *, source: str, default_name: str = "fleet") -> Fleet:
    """Validate a parsed ``fleet.yaml``.

    Args:
        data: the YAML mapping.
        source: what to name in errors (the file).
        default_name: the fleet's name when the file gives none.

    Returns:
        The frozen :class:`Fleet`.

    Raises:
        FleetError: a field is missing, unknown or wrong; a repository is listed twice;
            a ``config`` is not a valid mendflow config.
    """
    if not isinstance(data, dict):
        raise FleetError(f"the top level must be a mapping, not {type(data).__name__}",
                         subject=source, hint="start with `repositories:` (see README, Fleets)")
    data = {"name": _name(default_name), **data}
    try:
        fleet = Fleet.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        raise FleetError(f"{_field(first['loc'])}: {first['msg']}", subject=source,
                         hint="fix the field named above (see README, Fleets)") from None
    seen: dict[str, str] = {}
    for index, repository in enumerate(fleet.repositories):
        if repository.key in seen:
            raise FleetError(f"repositories.{index}: {repository.url} is listed twice "
                             f"(as {seen[repository.key]})", subject=source,
                             hint="list each repository once")
        seen[repository.key] = repository.url
        try:
            validate_config(fleet.repository_config(repository),
                            source=f"{source}: repositories.{index}.config")
        except ConfigError as err:
            raise FleetError(err.message, subject=err.subject, hint=err.hint) from None
    return fleet


def _name(stem: str) -> str:
    return _SAFE.sub("-", stem.lower()).strip("-")[:63] or "fleet"


def load_fleet(path: Path | str) -> Fleet:
    """Read and validate a ``fleet.yaml``.

    Args:
        path: the file.

    Returns:
        The :class:`Fleet`; its name defaults to the file's stem (``fleet.yaml`` → ``fleet``).

    Raises:
        FleetError: the file is missing, unreadable, not YAML, or not a valid fleet.
    """
    path = Path(path)
    data = read_yaml(path, error=FleetError, what="fleet file", hint="pass an existing fleet.yaml")
    return parse_fleet(data, source=str(path), default_name=path.stem)
