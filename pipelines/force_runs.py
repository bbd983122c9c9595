"""The nightly forecast and the scenario flow with sales forces (``forces:`` in the config).

Both score with the registry's champion, as they do for one force: its
forecaster of total sales, and, per segment, the potential models its
training run logged beside it (``segment-potential-models``, a
:class:`~territory.models.force_recommender.SegmentPotentials`; logged by
``territory run`` and by the train flow when the config has ``forces:``).
Nothing is refitted: each force's recent sales and workload come from this
run's data (:func:`territory.pipelines.forces.champion_segment_stage`).

Then, per force, what the one-force flow does on that force's view of the run:

- nightly: the force's current alignment described and recommended on (a
  force without one is designed fresh, as a one-force nightly run without
  ``data.alignment`` is);
- scenario: a fresh design of the force the scenario names, on its territories
  (:func:`scenario_config`); the other forces keep their current alignment,
  described as in a nightly run (one without an alignment is designed). A
  scenario that names no force designs every force as configured
  (:func:`designed_forces`).

The outputs are laid out as the pipeline's with forces are
(:func:`territory.pipelines.publish.write_force_outputs`): every table at the
top with its ``force`` column, each force's full outputs in
``forces/<force>/``, the overlay report at the top. A champion trained
without forces, or for other forces or segments, stops the flow with an
error that says to train with this config first.

Plain functions: the Prefect wiring is in :mod:`territory.pipelines.flows`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from territory.features.errors import InputError
from territory.features.feature_set import FeatureSet
from territory.models import tracking
from territory.models.config import TerritoryConfig
from territory.models.force_recommender import SegmentPotentials
from territory.pipelines import journal, publish
from territory.pipelines.config import RunConfig
from territory.pipelines.forces import check_champion_segments
from territory.pipelines.publish import RegisteredModels
from territory.pipelines.stages import Inputs


def load_segment_potentials(config: RunConfig, model: RegisteredModels) -> SegmentPotentials:
    """The segment potential models of the champion's (``model``'s) training run, checked
    against the config's forces and segments (InputError when it has none, or others)."""
    publish.setup_tracking(config)
    fitted = tracking.load_logged_potential(model.run_id, tracking.SEGMENT_POTENTIAL_ARTIFACT)
    where = f"version {model.version} of '{model.name}' (run {model.run_id})"
    return check_champion_segments(config, fitted, where)


SCENARIO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def scenario_config(config: RunConfig, scenario: TerritoryConfig | None, scenario_name: str,
                    force: str | None = None) -> RunConfig:
    """The config of a scenario: ``scenario`` replaces the territories of one force
    (``force``) with ``forces:``, or the top-level ``territories`` without.

    ``scenario_name`` becomes part of the folder's name, so it must be a plain name.
    """
    if not SCENARIO_NAME.match(scenario_name):
        raise InputError("scenario", f"scenario name '{scenario_name}' is not a plain name",
                         hint="use letters, digits, '-' and '_'")
    if config.forces is None:
        if force is not None:
            raise InputError("scenario", f"force {force!r} is given, but the config has no "
                             "forces:", key="force",
                             hint="leave force out: the scenario replaces territories:")
        return config if scenario is None else config.model_copy(
            update={"territories": scenario})
    names = [f.name for f in config.forces]
    if scenario is None and force is None:
        return config
    if scenario is None or force not in names:
        what = ("a scenario with forces: replaces one force's territories, but no force is "
                "named" if force is None and scenario is not None
                else f"unknown force {force!r}" if force not in names
                else f"force {force!r} is named, but no scenario is given")
        raise InputError("scenario", what, key="force",
                         hint=f"name one of the forces {', '.join(names)} with the scenario's "
                              "territories, or leave both out to design every force as "
                              "configured")
    forces = [f.model_copy(update={"territories": scenario}) if f.name == force else f
              for f in config.forces]
    return config.model_copy(update={"forces": forces})


def designed_forces(config: RunConfig, force: str | None = None) -> list[str]:
    """The forces a design flow designs afresh: ``force`` (a scenario's) alone, or every
    force of the config when none is named (the pipeline, a scenario of every force)."""
    return [force] if force is not None else [f.name for f in config.forces or []]


def write_scored_forces(
    entry, config: RunConfig, folder: Path, inputs: Inputs, features: FeatureSet,
    model: RegisteredModels, segments, views, designs, recs, started: float,
    extra: dict | None = None, watch=None,
) -> dict:
    """Write a scoring run's outputs with sales forces into ``folder``, atomically.

    ``entry`` is the flow run's journal entry. The layout is the pipeline's
    with forces; the manifest names the model version as the one-force
    scoring runs' does, and the forces. The result carries each force's
    report content under ``contents`` and its measures under ``forces``.
    """
    with journal.publishing(entry, config, folder, registry=False) as out:
        contents = publish.write_force_outputs(out.tmp, config, model.trained, views, designs,
                                               recs, segments, watch)
        manifest = publish.scored_manifest(config, inputs, features, model, started, extra)
        manifest["forces"] = [view.name for view in views]
        (out.tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    return {"folder": folder, "contents": contents, "forces": {
        view.name: {"territories": design.overall, "current_territories": design.current_overall,
                    "violations": design.violations, "diagnosis": design.diagnosis,
                    "report_html": folder / "forces" / view.name / "report.html"}
        for view, design in zip(views, designs, strict=True)}}
