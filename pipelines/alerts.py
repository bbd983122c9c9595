"""Alerts of the nightly run: the records, their words, the log file and the webhook.

The rules are evaluated on the monitoring step's records
(:func:`territory.models.monitoring.accuracy_alerts` and ``input_alerts``,
thresholds from ``monitoring.alerts``). Each alert that fires becomes one
JSON line of ``<workspace>/monitoring/alerts.jsonl`` (the file is rewritten
atomically, under a lock) and, with ``monitoring.webhook`` set, one POST of
the same JSON. The Prefect artifact and the retrain are started by
:func:`territory.pipelines.deploy.publish_monitoring`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock

from territory.models import monitoring as mon
from territory.pipelines.config import RunConfig
from territory.pipelines.outputs import atomic_file


def alerts_path(config: RunConfig) -> Path:
    """``<workspace>/monitoring/alerts.jsonl``: one JSON alert record a line, oldest first."""
    return Path(config.workspace) / "monitoring" / "alerts.jsonl"


def evaluate(config: RunConfig, history: pd.DataFrame | None, check) -> list[mon.Alert]:
    """Every rule of ``monitoring.alerts`` on the accuracy history and the input check."""
    rules = config.monitoring.alerts
    alerts = mon.accuracy_alerts(history, rules)
    if check is not None:
        alerts += mon.input_alerts(check.drift, check.schema, check.quality,
                                   check.reference_quality, rules)
    return alerts


def message(alert: mon.Alert) -> str:
    """One alert in words."""
    d = alert.detail
    if alert.rule == "realised_wape":
        runs = ", ".join(f"{a}: {w:.0%} vs {p:.0%}" for a, w, p in
                         zip(d["as_of"], d["wape"], d["promised_wape"], strict=True))
        return (f"Realised WAPE was more than {alert.threshold:.0%} worse than the backtest "
                f"promised for the last {len(d['as_of'])} forecasts measured ({runs}).")
    if alert.rule == "coverage":
        return (f"Only {alert.value:.0%} of the actuals of the forecast as of {d['as_of']} fell "
                f"inside its ranges (floor {alert.threshold:.0%}).")
    if alert.rule == "drift":
        return (f"Input {alert.subject} moved from the champion's training data: PSI "
                f"{alert.value:.2f} (threshold {alert.threshold:.2f}), KS {d['ks']:.2f}, mean "
                f"{d['reference_mean']:,.4g} -> {d['current_mean']:,.4g}.")
    if alert.rule == "zeros":
        return (f"Exact zeros make up {d['zero_share']:.1%} of the last year of sales, against "
                f"{d['reference_zero_share']:.1%} in training (+{alert.value:.1%}; threshold "
                f"+{alert.threshold:.1%}): check whether gaps are reported as zeros.")
    if alert.rule == "zero_coded":
        return (f"{alert.value:.0f} units now end in a year or more of exact zeros after years "
                f"of sales ({alert.threshold:.0f} in training): a reporting change, not a market.")
    return f"Schema change since training: {alert.subject} ({d['what']}) is {d['change']}."


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def records(config: RunConfig, alerts: list[mon.Alert], as_of: pd.Timestamp,
            report: Path) -> list[dict]:
    """The alert records of one run (what the file, the webhook and the artifact carry)."""
    raised = datetime.now(UTC).isoformat(timespec="seconds")
    return [_plain({"raised_at": raised, "run_name": config.run_name,
                    "as_of": f"{pd.Timestamp(as_of):%Y-%m-%d}", "rule": a.rule,
                    "subject": a.subject, "value": a.value, "threshold": a.threshold,
                    "message": message(a), "detail": a.detail, "report": str(report)})
            for a in alerts]


def append_records(config: RunConfig, new: list[dict]) -> Path:
    """Add ``new`` to ``alerts.jsonl``: the whole file is rewritten atomically, under a lock."""
    path = alerts_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.parent / ".alerts.lock"), timeout=config.schedule.lock_timeout_s):
        old = path.read_text(encoding="utf-8") if path.is_file() else ""
        with atomic_file(path) as tmp:
            tmp.write_text(old + "".join(json.dumps(r) + "\n" for r in new), encoding="utf-8")
    return path


def read_records(config: RunConfig) -> list[dict]:
    path = alerts_path(config)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def post_webhook(url: str, payload: dict, timeout_s: float) -> dict:
    """POST ``payload`` as JSON; the outcome as a record (a failure never fails the run)."""
    body = json.dumps(payload).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "User-Agent": "territory-monitoring"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return {"url": url, "status": response.status}
    except (urllib.error.URLError, OSError) as exc:
        return {"url": url, "error": str(getattr(exc, "reason", exc))}


def markdown(new: list[dict]) -> str:
    """The alerts of one run as markdown, for Prefect's UI."""
    lines = [f"# {len(new)} alert{'s' if len(new) != 1 else ''}: {new[0]['run_name']}, as of "
             f"{new[0]['as_of']}", ""] + [f"- **{r['rule']}** ({r['subject']}): {r['message']}"
                                          for r in new]
    return "\n".join([*lines, "", f"Report: `{new[0]['report']}`"])
