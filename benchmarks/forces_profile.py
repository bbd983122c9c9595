"""Profile: where the CPU of the two-force demo goes at a soft workload floor (issue #18).

Runs the pipeline's stages in this process (no Prefect, no MLflow, no
outputs) on ``configs/demo_two_forces.yaml`` with the soft workload
tolerance set to ``--soft-floor`` (0.05: the floor that costs 2.61x one force;
the committed config has 0.2), and reports:

- CPU seconds (``time.process_time``) per stage, per force for the design
  and its recommendations, and per rung of each force's soft ladder (the
  ``cpu_s`` column the design records in ``plans.csv``);
- under cProfile (about 1.5x the real CPU), the design stage's own time
  split between the territory engine (``models/territories/``) and the code
  around it (the ladder in ``models/plans.py``, ``models/alignment.py``,
  the balance probability, the pipeline's stages), and the costliest
  functions outside the engine, by cumulative time.

Run (not part of the test suite; about 8 minutes of CPU)::

    .venv/bin/python benchmarks/forces_profile.py [--soft-floor 0.05] [--no-profile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "demo_two_forces.yaml"
ENGINE = f"{os.sep}models{os.sep}territories{os.sep}"
OURS = (f"{os.sep}models{os.sep}", f"{os.sep}pipelines{os.sep}", f"{os.sep}features{os.sep}")


def config_at(floor: float, workspace: Path):
    """The two-force demo config, soft workload floor ``floor``, workspace ``workspace``."""
    from territory.pipelines.config import load_config

    raw = yaml.safe_load(CONFIG.read_text())
    for rule in raw["territories"]["balance"]:
        if rule["role"] == "soft":
            rule["tolerance"] = floor
    base = CONFIG.parent
    for key in ("units", "sales", "demographics"):
        raw["data"][key] = str((base / raw["data"][key]).resolve())
    for force in raw["forces"]:
        for key in ("alignment", "reps"):
            force[key] = str((base / force[key]).resolve())
    raw["workspace"], raw["progress"] = str(workspace), "none"
    path = workspace.parent / "two_forces.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


def timed(label: str, rows: list, fn, *args):
    t0 = time.process_time()
    out = fn(*args)
    rows.append((label, time.process_time() - t0))
    print(f"  {label}: {rows[-1][1]:.1f} s CPU", flush=True)
    return out


def bucket(filename: str) -> str:
    """Which part of the code a profiled function belongs to."""
    if ENGINE in filename:
        return "engine (models/territories/)"
    if any(part in filename for part in OURS):
        return "around the engine (" + "/".join(Path(filename).parts[-2:]) + ")"
    return "libraries (numpy, pandas, scipy, ...), called from both"


def profile_report(profile: cProfile.Profile, top: int) -> None:
    stats = pstats.Stats(profile)
    own: dict[str, float] = {}
    total = 0.0
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():
        own[bucket(filename)] = own.get(bucket(filename), 0.0) + tottime
        total += tottime
    print(f"\ndesign stage under cProfile: {total:.1f} s own time in all")
    print("| where (own time) | s | share |\n|---|---:|---:|")
    for name, seconds in sorted(own.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {seconds:.1f} | {seconds / total:.0%} |")
    print(f"\ncostliest functions outside the engine, by cumulative time (top {top}):")
    print("| function | calls | cumulative s | own s |\n|---|---:|---:|---:|")
    rows = [(f"{Path(f).parts[-2]}/{Path(f).name}:{name}", calls, cum, tt)
            for (f, _, name), (_, calls, tt, cum, _) in stats.stats.items()
            if ENGINE not in f and any(part in f for part in OURS)]
    for label, calls, cum, tt in sorted(rows, key=lambda r: -r[2])[:top]:
        print(f"| {label} | {calls} | {cum:.1f} | {tt:.1f} |")
    engine = [(f"{Path(f).name}:{name}", calls, cum)
              for (f, _, name), (_, calls, _, cum, _) in stats.stats.items() if ENGINE in f]
    print(f"\nengine entry points, by cumulative time (top {top}):")
    print("| function | calls | cumulative s |\n|---|---:|---:|")
    for label, calls, cum in sorted(engine, key=lambda r: -r[2])[:top]:
        print(f"| {label} | {calls} | {cum:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--soft-floor", type=float, default=0.05)
    parser.add_argument("--no-profile", action="store_true", help="stage CPU only")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; load average {os.getloadavg()[0]:.1f}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; soft floor "
          f"±{args.soft_floor:.0%}; cProfile {'off' if args.no_profile else 'on (design)'}")
    from territory.pipelines import forces, stages

    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="forces_profile_") as tmp:
        workspace = Path(tmp) / "workspace"
        workspace.mkdir()
        config = config_at(args.soft_floor, workspace)
        inputs = timed("load and validate inputs", rows, stages.load_inputs, config)
        features = timed("build features", rows, stages.feature_stage, config, inputs)
        trained = timed("train forecast and potential models", rows, stages.train_stage,
                        config, features)
        scores = timed("score units", rows, stages.score_stage, config, features, trained)
        segments = timed("potential per segment", rows, forces.segment_stage, config, inputs,
                         features)
        views = forces.force_views(config, inputs, features, scores, segments)
        profile = None if args.no_profile else cProfile.Profile()
        designs = {}
        for view in views:
            if profile is not None:
                profile.enable()
            designs[view.name] = timed(f"design {view.name}", rows, stages.design_stage,
                                       view.config, view.inputs, view.features, view.scores)
            if profile is not None:
                profile.disable()
            timed(f"recommend {view.name}", rows, stages.recommend_stage, view.config,
                  view.inputs, view.features, view.scores, designs[view.name])
    print("\n| stage | CPU s |\n|---|---:|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.1f} |")
    print(f"| **all stages** | **{sum(s for _, s in rows):.1f}** |")
    for name, design in designs.items():
        plans = design.plans
        print(f"\n{name}: plans tried (CPU s per plan, as the design records it):")
        print("| plan | published | breaks hard | CPU s |\n|---|---|---:|---:|")
        for _, plan in plans.iterrows():
            print(f"| {plan['plan']} | {bool(plan['published'])} | "
                  f"{int(plan.get('hard_violations', 0))} | {plan['cpu_s']:.1f} |")
        if design.comparison is not None:
            print(f"comparison (minimal change) rows: {len(design.comparison)}")
    if profile is not None:
        profile_report(profile, args.top)


if __name__ == "__main__":
    main()
