"""The decorator every component spec uses: a frozen, validated dataclass.

Specs are pydantic dataclasses so that a config section is checked (types, unknown keys)
when it is parsed, before any work starts, while staying plain frozen dataclasses for
the components that receive them.
"""

from __future__ import annotations

import functools

import pydantic

component_spec = functools.partial(
    pydantic.dataclasses.dataclass,
    frozen=True,
    config=pydantic.ConfigDict(extra="forbid"),
)
