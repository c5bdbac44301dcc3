"""Where a mission's configuration comes from, and which source gave each value.

A mission on a repository reads, highest precedence first:

1. the YAML file given with ``--config`` (the flow parameter ``config_file``);
2. ``.mendflow.yaml`` at the repository root;
3. the ``[tool.mendflow]`` table of the repository's ``pyproject.toml``;
4. the embedded defaults (:class:`~mendflow.core.config.MendflowConfig`).

Sources merge section by section, field by field: a source that sets
``tools.pytest.per_test_timeout_s`` changes that field only, and the other
fields of ``tools.pytest`` still come from the sources below it. A mapping with
a ``type`` (a backend: ``fixer``, ``environment``) that differs from the one
below replaces it whole, since the fields of one backend mean nothing to
another. Lists replace lists.

Each source is validated on its own first, so an unknown or misspelled field
is an error that names the file and the field.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from mendflow.core.config import MendflowConfig, load_config_data, validate_config
from mendflow.core.errors import ConfigError

REPOSITORY_FILE = ".mendflow.yaml"
"""The config file mendflow looks for at a repository's root."""

DEFAULTS = "defaults"
"""The origin of a value no source set."""

SourceKind = Literal["config-file", "repository-file", "pyproject"]


class ConfigSource(BaseModel):
    """One configuration source that was found and read.

    Attributes:
        kind: ``config-file`` (``--config``), ``repository-file`` (``.mendflow.yaml``)
            or ``pyproject`` (``[tool.mendflow]``).
        path: the file it was read from.
        data: its mapping, validated on its own (keys as written).
    """

    model_config = ConfigDict(frozen=True)

    kind: SourceKind
    path: str
    data: dict[str, Any]

    @property
    def label(self) -> str:
        """How ``config show`` names this source (``pyproject.toml [tool.mendflow]``)."""
        return f"{self.path} [tool.mendflow]" if self.kind == "pyproject" else self.path


class EffectiveConfig(BaseModel):
    """The merged configuration of a mission, and the origin of every value.

    Attributes:
        config: the validated, merged config.
        sources: the sources read, highest precedence first.
        origins: dotted field name (``tools.pytest.per_test_timeout_s``) -> the label
            of the source that set it; fields absent here come from the defaults.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    config: MendflowConfig
    sources: tuple[ConfigSource, ...] = ()
    origins: dict[str, str] = Field(default_factory=dict)

    def origin(self, dotted: str) -> str:
        """The label of the source of a field (or of its closest set parent), else defaults."""
        parts = dotted.split(".")
        for end in range(len(parts), 0, -1):
            found = self.origins.get(".".join(parts[:end]))
            if found:
                return found
        return DEFAULTS


def pyproject_table(path: Path) -> dict[str, Any] | None:
    """Read ``[tool.mendflow]`` of a ``pyproject.toml``.

    Args:
        path: the ``pyproject.toml`` file.

    Returns:
        The table, or None when the file or the table is absent.

    Raises:
        ConfigError: the file is not valid TOML, or the table is not a table.
    """
    if not path.is_file():
        return None
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"not valid TOML: {err}", subject=str(path),
                          hint="fix the TOML syntax (mendflow reads its [tool.mendflow] table)"
                          ) from None
    table = document.get("tool", {}).get("mendflow")
    if table is not None and not isinstance(table, dict):
        raise ConfigError("[tool.mendflow] must be a table", subject=str(path),
                          hint="write it as a TOML table of config sections")
    return table


def discover_sources(config_file: Path | str | None,
                     repo_root: Path | None) -> tuple[ConfigSource, ...]:
    """Find and read every configuration source of a mission, highest precedence first.

    Args:
        config_file: the ``--config`` YAML file, or None.
        repo_root: the repository's root (its ``.mendflow.yaml`` and ``pyproject.toml``
            are read), or None when it is not known.

    Returns:
        The sources found, each validated on its own.

    Raises:
        ConfigError: a file is missing (``--config``), unreadable, not YAML/TOML, or
            holds an unknown or invalid field; the message names the file and the field.
    """
    sources: list[ConfigSource] = []
    if config_file is not None:
        sources.append(_source("config-file", Path(config_file), load_config_data(config_file)))
    if repo_root is not None:
        repository_file = repo_root / REPOSITORY_FILE
        if repository_file.is_file():
            sources.append(_source("repository-file", repository_file,
                                   load_config_data(repository_file)))
        pyproject = repo_root / "pyproject.toml"
        table = pyproject_table(pyproject)
        if table is not None:
            sources.append(_source("pyproject", pyproject, table))
    return tuple(sources)


def _source(kind: SourceKind, path: Path, data: Any) -> ConfigSource:
    label = f"{path} [tool.mendflow]" if kind == "pyproject" else str(path)
    validate_config(data, source=label)  # names the file and the field
    return ConfigSource(kind=kind, path=str(path), data=dict(data or {}))


def effective_config(config_file: Path | str | None, repo_root: Path | None) -> EffectiveConfig:
    """Merge a mission's configuration sources over the defaults.

    Args:
        config_file: the ``--config`` YAML file, or None.
        repo_root: the repository's root, or None.

    Returns:
        The merged config with the origin of every value set by a source.

    Raises:
        ConfigError: a source is invalid, or the merged config is (the message names
            the field).
    """
    sources = discover_sources(config_file, repo_root)
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for source in reversed(sources):  # lowest precedence first; higher ones overwrite
        merged = merge_mappings(merged, source.data, source.label, origins)
    label = " + ".join(s.label for s in sources) or DEFAULTS
    return EffectiveConfig(config=validate_config(merged, source=label), sources=sources,
                           origins=origins)


def merge_mappings(lower: Mapping[str, Any], higher: Mapping[str, Any], label: str,
                   origins: dict[str, str], prefix: str = "") -> dict[str, Any]:
    """Merge ``higher`` over ``lower`` field by field, recording where each value came from.

    Args:
        lower: the mapping of the lower-precedence sources.
        higher: the mapping of one higher-precedence source.
        label: the higher source's label, recorded in ``origins``.
        origins: dotted field name -> label; updated in place.
        prefix: the dotted path of these mappings (recursion).

    Returns:
        A new merged mapping (the inputs are not changed).
    """
    merged = dict(lower)
    for key, value in higher.items():
        dotted = f"{prefix}{key}"
        below = merged.get(key, {} if isinstance(value, Mapping) else None)
        if isinstance(value, Mapping) and value and isinstance(below, Mapping) and (
                not below or value.get("type", below.get("type")) == below.get("type")):
            merged[key] = merge_mappings(below, value, label, origins, f"{dotted}.")
            continue
        for name in [k for k in origins if k == dotted or k.startswith(f"{dotted}.")]:
            del origins[name]  # replaced whole: nothing below keeps its old origin
        if isinstance(value, Mapping) and value:
            merged[key] = merge_mappings({}, value, label, origins, f"{dotted}.")
        else:
            merged[key] = value
            origins[dotted] = label
    return merged


def flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Flatten a config dump into (dotted field, value) pairs, leaves only.

    Args:
        data: ``MendflowConfig.model_dump(mode="json")`` or a part of it.
        prefix: the dotted path of ``data``.

    Returns:
        Pairs in the config's field order; lists and empty mappings are leaves.
    """
    pairs: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            pairs.extend(flatten(value, f"{prefix}{key}."))
        else:
            pairs.append((f"{prefix}{key}", value))
    return pairs


def describe(effective: EffectiveConfig) -> list[tuple[str, Any, str]]:
    """Every field of the effective config with its value and its origin.

    Args:
        effective: the merged config.

    Returns:
        ``(dotted field, JSON value, origin label)`` triples, in the config's order.
    """
    dump = effective.config.model_dump(mode="json")
    return [(name, value, effective.origin(name)) for name, value in flatten(dump)]


def source_labels(sources: Sequence[ConfigSource]) -> list[str]:
    """The labels of the sources, highest precedence first, then the defaults."""
    return [s.label for s in sources] + [DEFAULTS]
