"""Sales forces in the config: several teams, each with its own territories over one map.

A company often has more than one sales force (a hospital team and a clinic
team; a software and a hardware team). Each force sells some segments of
the sales history (the ``segment`` column, :mod:`territory.features.segments`)
and has its own territories: its number of reps (or auto-K from capacity),
its balance rules, its current alignment and reps. Geography and
demographics are shared.

``forces:`` left out means one implicit force that sells everything: the run
is exactly what it was before forces existed. A force's ``territories`` are
merged key by key onto the top-level ``territories:`` section, so a force
states only what differs (``{n_territories: 30}``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from territory.features.config import FrozenModel
from territory.models.config import TerritoryConfig


class ForceConfig(FrozenModel):
    """One sales force: its name, the segments it sells, its territories, alignment and reps.

    ``name`` becomes part of output names (the ``force`` column, per-force
    report folders), so it must be a plain name. ``alignment`` and ``reps``
    are that force's current alignment and reps files (relative paths from
    the config's folder, like ``data:``'s).
    """

    name: str
    segments: list[str] = Field(min_length=1)
    territories: TerritoryConfig = Field(default_factory=TerritoryConfig)
    alignment: Path | None = None
    reps: Path | None = None

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        from territory.pipelines.config import check_safe_name

        return check_safe_name(value, "forces.name")

    @field_validator("segments", mode="before")
    @classmethod
    def _some_segments(cls, value):
        if isinstance(value, list | tuple) and not value:
            raise ValueError("a force must sell at least one segment: list the values of the "
                             "sales file's segment column it sells, e.g. segments: [hospital]")
        return value

    @field_validator("segments")
    @classmethod
    def _distinct_segments(cls, value: list[str]) -> list[str]:
        value = [str(v).strip() for v in value]
        if any(not v for v in value) or len(set(value)) != len(value):
            raise ValueError(f"segments must be distinct, non-empty names; got {value}")
        return value


def merged_forces(raw: object, territories: object) -> object:
    """``forces:`` with each force's ``territories`` laid over the top-level section.

    Runs before validation, on the YAML's mappings; anything that is not a
    list of mappings is left for the model to reject.
    """
    if not isinstance(raw, list):
        return raw
    base = territories if isinstance(territories, dict) else {}
    if isinstance(territories, TerritoryConfig):
        base = territories.model_dump(exclude={"balance_attributes", "tolerance"})
    out = []
    for force in raw:
        if isinstance(force, dict) and isinstance(force.get("territories", {}), dict):
            own = force.get("territories", {})
            balance_keys = {"balance", "balance_attributes", "tolerance"}
            if balance_keys & set(own):  # the force's balance replaces the top-level one
                merged = {k: v for k, v in base.items() if k not in balance_keys} | own
            else:
                merged = base | own
            force = {**force, "territories": merged}
        out.append(force)
    return out


def check_forces(forces: list[ForceConfig]) -> None:
    """Force names are unique and no segment is sold by two forces (ValueError)."""
    names = [f.name for f in forces]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"forces: two forces are named {', '.join(map(repr, twice))}; give "
                         "each force its own name")
    seller: dict[str, str] = {}
    for force in forces:
        for segment in force.segments:
            if segment in seller:
                raise ValueError(
                    f"forces: segment {segment!r} is sold by both {seller[segment]!r} and "
                    f"{force.name!r}; a segment's sales belong to one force (split the segment "
                    "in the sales file to share a product line)")
            seller[segment] = force.name
    for force in forces:
        tc = force.territories
        if tc.n_territories == "auto" and tc.rep_capacity is None and force.reps is None:
            raise ValueError(f"forces: force {force.name!r} has n_territories: auto but no "
                             "capacity per rep: set its territories.rep_capacity, or give its "
                             "reps file with a capacity column")
