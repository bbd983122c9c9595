"""Typed config for the models stage: forecast, potential and territory design."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from territory.features.config import FrozenModel


class BacktestConfig(FrozenModel):
    """Rolling-origin backtest run by the train stage (``windows: 0`` turns it off).

    The last origin is ``horizon`` periods before the as-of date and the
    others are ``step`` periods apart; the model is refit at each origin.
    """

    windows: int = Field(2, ge=0, le=24)
    step: int = Field(3, ge=1)
    # "ets" is the older name of "auto_ets" (statsforecast's AutoETS)
    baselines: list[Literal["seasonal_naive", "moving_average", "auto_ets", "auto_theta",
                            "auto_arima", "auto_ces", "dynamic_theta", "ets"]] = Field(
        default_factory=lambda: ["seasonal_naive", "moving_average"]
    )


Member = Literal["auto_ets", "auto_theta", "auto_arima", "auto_ces", "dynamic_theta"]


class CombinationConfig(FrozenModel):
    """The published forecast: LightGBM combined with statsforecast members.

    With ``members`` named, the train stage's backtest forecasts them on the
    same windows as LightGBM, learns per-horizon inverse-MASE weights
    (``power``, ``trim``: see ``territory.models.combination``) and publishes
    the combination when it beats the best single member there; otherwise
    that best member alone. Empty ``members``, or the backtest off
    (``backtest.windows: 0``: nothing to learn the weights on or to gate
    with): LightGBM alone.
    """

    members: list[Member] = Field(default_factory=list)
    power: float = Field(1.0, gt=0.0, le=4.0)
    trim: float = Field(1.5, ge=1.0)
    n_jobs: int = Field(1, ge=1)  # processes statsforecast uses


class ReconcileConfig(FrozenModel):
    """Coherent forecasts for unit -> territory -> region -> total (``territory.models.reconcile``).

    The run reconciles the published unit forecasts with the published alignment: each
    territory, region and the total get their own base forecast (``member`` on their
    sales), and the method of ``methods`` with the lowest backtest WAPE at ``level`` is
    published, among those whose unit-level WAPE and MASE are at most ``unit_tolerance``
    (a share) worse than BottomUp's (null: no such limit); BottomUp (the unit forecasts as they are)
    unless another beats it by more than ``tolerance`` (absolute WAPE).
    ``enabled: false`` publishes no node table.
    """

    enabled: bool = True
    methods: list[Literal["bottom_up", "ols", "wls_struct", "wls_var", "mint_shrink"]] = Field(
        default_factory=lambda: ["bottom_up", "ols", "wls_struct", "wls_var", "mint_shrink"])
    member: Member = "auto_theta"
    level: Literal["territory", "region", "total"] = "territory"
    tolerance: float = Field(0.0, ge=0.0, lt=1.0)
    unit_tolerance: float | None = Field(0.0, ge=0.0, lt=1.0)


class ForecastConfig(FrozenModel):
    """Global LightGBM forecaster, direct multi-horizon.

    ``gate_metric`` (lower is better) decides promotion: the challenger
    becomes champion only if it beats the champion's score on the same
    backtest windows by at least ``gate_margin`` (relative). With the
    backtest off (``backtest.windows: 0``) the gate uses the same metric on
    the validation window (WAPE in place of MASE, which it lacks).
    """

    horizon: int = Field(12, ge=1, le=36)
    objective: Literal["l2_log_ratio", "huber_log_ratio", "l2_scaled", "l2_log", "tweedie",
                       "poisson"] = "l2_log_ratio"
    interval_level: float = Field(0.8, gt=0.0, lt=1.0)
    validation_periods: int = Field(12, ge=1)
    n_estimators: int = Field(600, ge=1)
    learning_rate: float = Field(0.05, gt=0.0, le=1.0)
    num_leaves: int = Field(31, ge=2)
    min_child_samples: int = Field(50, ge=1)
    feature_fraction: float = Field(0.8, gt=0.0, le=1.0)
    bagging_fraction: float = Field(0.8, gt=0.0, le=1.0)
    lambda_l2: float = Field(0.0, ge=0.0)
    weighting: Literal["scale", "sqrt_scale", "equal"] = "sqrt_scale"
    # a row weighs half as much per 10 years of age (chosen on early origins; None: all alike)
    recency_half_life: float | None = Field(10.0, gt=0.0)
    log_offset: float = Field(0.05, gt=0.0, le=10.0)  # zeros: log(y + c·level), c = log_offset
    early_stopping_rounds: int = Field(50, ge=1)
    max_train_rows: int = Field(400_000, ge=1000)
    max_bin: int = Field(63, ge=15, le=1023)
    n_jobs: int = Field(1, ge=1)  # LightGBM threads; >1 only pays on an otherwise idle machine
    min_history: int = Field(12, ge=1)
    seed: int = 42
    gate_metric: Literal["wape", "mase", "mae", "rmse"] = "wape"
    gate_margin: float = Field(0.0, ge=0.0, lt=1.0)
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)
    combination: CombinationConfig = Field(default_factory=CombinationConfig)
    reconcile: ReconcileConfig = Field(default_factory=ReconcileConfig)


class PotentialConfig(FrozenModel):
    """The potential model: what a unit's market could sell.

    ``method: rep_adjusted`` (default) models log annual sales as a market
    part (LightGBM on market features) plus a territory (rep) effect, and
    states potential as the market part at the ``reference_quantile`` of the
    rep effects (see ``territory.models.potential_rep``); it needs the
    current alignment and falls back to ``quantile`` without one. It weights
    units by how noisy their sales are and, with ``own_sales``, credits each
    unit's own sales (rep taken out) as far as they are more reliable than
    comparable markets (``market_variance``).
    ``method: quantile`` is the ``quantile`` conditional quantile of sales
    given market features (the rep's effect stays in it).
    """

    method: Literal["rep_adjusted", "quantile"] = "rep_adjusted"
    quantile: float = Field(0.8, gt=0.0, lt=1.0)
    n_rounds: int = Field(6, ge=1, le=50)  # rep_adjusted: backfitting rounds
    shrinkage: float = Field(0.0, ge=0.0)  # rep_adjusted: pseudo-units of a zero rep effect
    relaxation: float = Field(1.5, gt=0.0, lt=2.0)  # rep_adjusted: step of each round's update
    reference_quantile: float = Field(0.9, gt=0.0, le=1.0)  # rep_adjusted: the "good rep"
    # rep_adjusted: spread of markets around the market model (log scale), against each
    # unit's sampling noise: weights, and the credit of a unit's own sales
    market_variance: float = Field(0.03, gt=0.0)
    own_sales: bool = True  # rep_adjusted: credit each unit's own sales (rep taken out)
    # rep_adjusted: per unit and territory, the interval of potential at this level, and
    # the probability of balance within the potential tolerance, from this many joint draws
    interval_level: float = Field(0.8, gt=0.0, lt=1.0)
    n_draws: int = Field(500, ge=10)
    n_estimators: int | None = Field(None, ge=1)  # null: 250 (rep_adjusted) or 500 (quantile)
    learning_rate: float = Field(0.03, gt=0.0, le=1.0)
    num_leaves: int = Field(15, ge=2)
    min_child_samples: int = Field(20, ge=1)
    feature_fraction: float = Field(0.8, gt=0.0, le=1.0)
    seed: int = 42


Measure = Literal["potential", "workload", "forecast", "units"]
#: What a territory can be balanced on: a unit measure, or ``index`` (``territories.index``).
Attribute = Literal["potential", "workload", "forecast", "units", "index"]


class BalanceRule(FrozenModel):
    """One balanced attribute: its tolerance and its role.

    ``hard`` must be met wherever it is feasible; ``soft`` is balanced as
    tightly as the hard attributes allow: the run tries the tolerances of
    ``frontier`` from loose to tight and publishes the tightest plan that
    still holds every hard attribute (see ``territory.models.plans``).
    A soft rule's ``tolerance`` is the tightest one tried.
    """

    attribute: Attribute
    tolerance: float = Field(0.05, gt=0.0, lt=1.0)
    role: Literal["hard", "soft"] = "hard"


class RobustBalanceConfig(FrozenModel):
    """Robust mode (off by default): publish the plan whose least sure territory is surest.

    Balance within ±τ on the *estimated* potential holds in truth only with some
    probability per territory (``p_within_tolerance``, from the potential's joint
    draws). With ``enabled``, the run also designs the published plan again with
    potential balanced to each of ``fractions`` × its tolerance (the soft attributes at
    the published plan's tolerance), and publishes the candidate whose smallest
    probability of lying within ±τ is highest, among those that hold every hard
    attribute at its own tolerance, the shape limit and the soft attributes as well as
    the plan they replace (see ``territory.models.robust_balance``). ``true`` is short
    for ``{enabled: true}``.
    """

    enabled: bool = False
    fractions: list[Annotated[float, Field(gt=0.0, lt=1.0)]] = Field(
        default_factory=lambda: [0.7, 0.4])

    @model_validator(mode="before")
    @classmethod
    def _from_bool(cls, data):
        return {"enabled": data} if isinstance(data, bool) else data

    @model_validator(mode="after")
    def _fractions_listed(self) -> RobustBalanceConfig:
        if self.enabled and not self.fractions:
            raise ValueError("territories.robust.fractions: list at least one fraction of the "
                             "potential tolerance to design candidates at, e.g. [0.7, 0.4]")
        if len(set(self.fractions)) != len(self.fractions):
            raise ValueError(f"territories.robust.fractions lists a value twice: "
                             f"{self.fractions}")
        return self


class TerritoryConfig(FrozenModel):
    """Territory design scenario.

    ``balance`` lists the balanced attributes with their tolerance and role
    (the older ``balance_attributes`` + ``tolerance`` still work: every
    attribute hard at that tolerance). ``frontier`` gives the tolerances a
    soft attribute is tried at, for the price-of-balance table (``plans``).
    ``max_elongation`` is the shape limit (a constraint, ranked below the
    hard attributes and above the soft ones): no territory's span should
    exceed that many diameters of the circle with its area.

    ``n_territories: auto`` chooses K from ``rep_capacity`` (or, left out,
    the mean ``capacity`` of the reps file; one of them is required) (workload one rep
    can carry, in the unit of ``workload_column`` per period, e.g. accounts)
    and optionally ``potential_per_rep``: the smallest K from
    ``ceil(total / capacity)`` up to ``auto_max_extra`` more whose design
    meets the balance (see ``territory.models.territory_planning``). ``regions`` nests
    the territories into that many balanced, contiguous regions, within
    ``region_tolerance``.
    """

    n_territories: Annotated[int, Field(ge=1)] | Literal["auto"] = 50
    balance: list[BalanceRule] = Field(default_factory=lambda: [
        BalanceRule(attribute="potential", tolerance=0.05, role="hard"),
        BalanceRule(attribute="workload", tolerance=0.05, role="soft")])
    # Older keys: read (every attribute hard at ``tolerance``), then derived from ``balance``
    # and left out of dumps, so a dump has one source of truth.
    balance_attributes: list[Attribute] = Field(default_factory=list, exclude=True)
    tolerance: float = Field(0.05, gt=0.0, lt=1.0, exclude=True)
    frontier: list[Annotated[float, Field(gt=0.0, lt=1.0)]] = Field(
        default_factory=lambda: [0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1])
    plan: Literal["best"] | Annotated[float, Field(gt=0.0, lt=1.0)] = "best"  # soft tolerance
    workload_column: str | None = "accounts"
    mode: Literal["fresh", "rebalance"] = "fresh"
    keep_rep_homes: bool = True
    n_starts: int = Field(1, ge=1)  # independent starts; the best is kept (see the engine)
    max_restarts: int = Field(0, ge=0)
    max_chains: int | None = Field(None, ge=0)
    time_limit_s: float = Field(120.0, gt=0.0)
    seed: int = 42
    # shape: a territory's span over the diameter of the circle with its area (null: no limit)
    max_elongation: float | None = Field(2.0, ge=1.0)
    compactness_weight: float = Field(40.0, ge=0.0)  # pull towards the centre while balancing
    # farthest a unit may be from its centre; a tight one may need max_restarts
    max_radius_km: float | None = Field(None, gt=0.0)
    rep_capacity: float | None = Field(None, gt=0.0)  # workload per rep, for n_territories: auto
    potential_per_rep: float | None = Field(None, gt=0.0)  # potential one rep can cover (auto)
    auto_max_extra: int = Field(5, ge=0)  # auto: candidates tried above the capacity bound
    regions: int | None = Field(None, ge=1)  # nest territories into this many regions
    region_tolerance: float = Field(0.10, gt=0.0, lt=1.0)
    # a composite index to balance as the attribute ``index``: weights of unit measures, each
    # measure divided by its mean over the units (so 1 is an average unit), e.g. a workload
    # index {workload: 0.7, units: 0.3}
    index: dict[Measure, Annotated[float, Field(gt=0.0)]] | None = None
    # also design the smallest change to the current alignment, for the compare table
    minimal_change: bool = True
    # robust mode: publish the candidate plan whose least sure territory is surest
    robust: RobustBalanceConfig = Field(default_factory=RobustBalanceConfig)

    @model_validator(mode="before")
    @classmethod
    def _balance_rules(cls, data):
        """Fill ``balance`` from the older keys, or the older keys from ``balance``."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        old = {k: data[k] for k in ("balance_attributes", "tolerance") if k in data}
        if "balance" in data and old:
            given = dict(old)
            data = {k: v for k, v in data.items() if k not in old}
            derived = cls._balance_rules(data)
            if any(derived[k] != v for k, v in given.items()):  # a dump holds both, agreeing
                raise ValueError(
                    f"give either balance (attribute, tolerance, role per attribute) or the "
                    f"older {' and '.join(sorted(given))}, not both")
            return derived
        if old:
            tol = data.get("tolerance", 0.05)
            attrs = data.get("balance_attributes", ["potential", "workload"])
            data["balance"] = [{"attribute": a, "tolerance": tol, "role": "hard"}
                               for a in dict.fromkeys(attrs)]
        rules = [BalanceRule.model_validate(r) if isinstance(r, dict) else r
                 for r in data.get("balance", cls.model_fields["balance"].default_factory())]
        if not rules:
            raise ValueError("balance: name at least one attribute to balance")
        names = [r.attribute for r in rules]
        if len(set(names)) != len(names):
            raise ValueError(f"balance names an attribute twice: {names}")
        if all(r.role == "soft" for r in rules):
            raise ValueError("balance needs at least one hard attribute (role: hard)")
        data["balance"] = rules
        data["balance_attributes"] = names
        data["tolerance"] = min(r.tolerance for r in rules if r.role == "hard")
        return data

    @property
    def tolerances(self) -> dict[str, float]:
        """Tolerance per balanced attribute (a soft one: the tightest tried)."""
        return {r.attribute: r.tolerance for r in self.balance}

    @property
    def soft_attributes(self) -> list[str]:
        return [r.attribute for r in self.balance if r.role == "soft"]

    @property
    def hard_attributes(self) -> list[str]:
        return [r.attribute for r in self.balance if r.role == "hard"]

    @model_validator(mode="after")
    def _index_is_defined(self) -> TerritoryConfig:
        if "index" in self.balance_attributes and not self.index:
            raise ValueError("balance names the attribute index: define it with territories.index, "
                             "the weight of each measure, e.g. {workload: 0.7, units: 0.3}")
        return self

    @model_validator(mode="after")
    def _robust_balances_potential(self) -> TerritoryConfig:
        if self.robust.enabled and "potential" not in self.hard_attributes:
            raise ValueError("territories.robust needs potential among the hard balance "
                             "attributes (balance: - {attribute: potential, role: hard}), or "
                             "set robust: false")
        return self

    @model_validator(mode="after")
    def _auto_and_regions(self) -> TerritoryConfig:
        if self.n_territories == "auto":
            if self.mode == "rebalance":
                raise ValueError("mode: rebalance keeps the current territories; "
                                 "set n_territories to their number, not auto")
        elif self.regions is not None and self.regions > self.n_territories:
            raise ValueError(f"regions ({self.regions}) cannot exceed n_territories "
                             f"({self.n_territories})")
        return self


class AlertRules(FrozenModel):
    """When the nightly run raises an alert; a threshold set to null turns its rule off.

    - ``wape_excess`` and ``wape_runs``: realised WAPE (all horizons) worse than
      the backtest promised by more than this share (0.25: 25% worse) for each
      of the last ``wape_runs`` forecasts measured;
    - ``coverage_floor``: the latest forecast measured held fewer of its
      actuals inside the forecast ranges than this share;
    - ``drift_psi``: a feature's PSI against the champion's training data is
      above this (0.25 is the usual "major shift");
    - ``zero_share_increase``: the share of exact zeros in the last year of
      sales rose by more than this (0.05: 5 points) since training, or more
      units now end in a year of zeros after years of sales;
    - ``schema_changes``: columns or units are new, missing or changed type since training.
    """

    wape_excess: float | None = Field(0.25, ge=0.0)
    wape_runs: int = Field(2, ge=1)
    coverage_floor: float | None = Field(0.5, gt=0.0, lt=1.0)
    drift_psi: float | None = Field(0.25, gt=0.0)
    zero_share_increase: float | None = Field(0.05, gt=0.0, lt=1.0)
    schema_changes: bool = True


class MonitoringConfig(FrozenModel):
    """What the nightly run watches, and what it does when a rule fires.

    ``reference_rows`` rows of the champion's training data (drawn with
    ``seed``) are kept with its training run, and as many of the new inputs
    are compared with them. An alert is written to
    ``<workspace>/monitoring/alerts.jsonl`` and a Prefect artifact; with
    ``webhook`` set it is also POSTed there as JSON (``webhook_timeout_s``);
    with ``retrain_on_alert`` the run starts the retrain deployment, whose
    model still passes the promotion gate before it becomes champion.
    """

    enabled: bool = True
    reference_rows: int = Field(20_000, ge=100)
    seed: int = 0
    alerts: AlertRules = Field(default_factory=AlertRules)
    webhook: str | None = None
    webhook_timeout_s: float = Field(10.0, gt=0.0)
    retrain_on_alert: bool = False

    @model_validator(mode="after")
    def _http_webhook(self) -> MonitoringConfig:
        if self.webhook is not None and not self.webhook.startswith(("http://", "https://")):
            raise ValueError(f"monitoring.webhook '{self.webhook}' is not an http(s) URL; give "
                             "one such as https://hooks.example.com/territory, or null for none")
        return self
