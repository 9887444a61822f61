"""The DAGs' configuration: environment variables read once into a frozen `Settings`.

`Settings.from_env(os.environ)` is called once, by the DAG file (the entry point); everything else
receives the object. Tests build it from a plain dict. Invalid values raise `ConfigError` at DAG
parse time with the variable's name, so the Airflow UI shows a clear import error instead of a
failing pod. No secret is read here: on Kubernetes credentials come from Secrets into the pods;
locally the steps inherit the environment of the Airflow process.

Every variable is documented in docs/airflow.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from datapipe_common.config import ConfigError, env_int
from datapipe_common.intraday import INTERVALS_MIN, QuotaPlan, plan_interval
from datapipe_common.libpq import check_sslmode
from datapipe_common.symbols import DEFAULT_SYMBOLS, symbols_from_env

from datapipe_dags.channels import Channels, check_conn_id

__all__ = ["ConfigError", "Settings", "check_image"]

REPO_ROOT = Path(__file__).resolve().parents[2]
# The tag the images are built with by default (images/*/Dockerfile, the chart's appVersion).
DEFAULT_IMAGE_TAG = "0.1.0"

# Requests/limits per component (Kubernetes quantities); DATAPIPE_POD_RESOURCES overrides them.
DEFAULT_RESOURCES: dict[str, dict[str, dict[str, str]]] = {
    "extract": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
    "transform": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
}

Runtime = Literal["local", "kubernetes"]

# dbt threads of the one `dbt build` per run (DATAPIPE_DBT_THREADS, given to dbt as DBT_THREADS): one
# per CPU of the transform pod (limit: 2), which is also what the two indicator shards need to build
# side by side (docs/transform.md).
DEFAULT_DBT_THREADS = 2

_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$")


def check_image(var: str, ref: str) -> str:
    """Accept only an image reference with a pinned tag or digest (never untagged or `:latest`)."""
    ref = ref.strip()
    if not ref or any(c.isspace() for c in ref):
        raise ConfigError(f"{var}={ref!r} is not an image reference (expected e.g. 'datapipe-extract:0.1.0')")
    if "@sha256:" in ref:
        return ref
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        raise ConfigError(
            f"{var}={ref!r} has no tag: pin the image version (e.g. '{ref}:{DEFAULT_IMAGE_TAG}') or a digest"
        )
    tag = last.rsplit(":", 1)[1]
    if not tag:
        raise ConfigError(f"{var}={ref!r} has an empty tag: pin the image version")
    if tag.lower() == "latest":
        raise ConfigError(
            f"{var}={ref!r} uses the tag 'latest', which is not allowed: pin a version tag "
            f"(e.g. '{ref.rsplit(':', 1)[0]}:{DEFAULT_IMAGE_TAG}') so every run uses the same image"
        )
    return ref


def _k8s_name(var: str, value: str) -> str:
    if not _K8S_NAME.match(value):
        raise ConfigError(f"{var}={value!r} is not a valid Kubernetes name (lower case, digits, '-', max 63)")
    return value


def _conn_id(var: str, value: str) -> str:
    if problem := check_conn_id(var, value):
        raise ConfigError(problem)
    return value


def _resources(raw: str) -> dict[str, dict[str, dict[str, str]]]:
    merged = json.loads(json.dumps(DEFAULT_RESOURCES))
    if not raw.strip():
        return merged  # type: ignore[no-any-return]
    try:
        override = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"DATAPIPE_POD_RESOURCES is not valid JSON: {exc}") from None
    if not isinstance(override, dict):
        raise ConfigError("DATAPIPE_POD_RESOURCES must be a JSON object keyed by component (extract, transform)")
    for component, spec in override.items():
        if component not in merged:
            raise ConfigError(f"DATAPIPE_POD_RESOURCES: unknown component {component!r} (known: {sorted(merged)})")
        if not isinstance(spec, dict) or set(spec) - {"requests", "limits"}:
            raise ConfigError(f"DATAPIPE_POD_RESOURCES[{component!r}] may only have 'requests' and 'limits'")
        for kind, values in spec.items():
            if not isinstance(values, dict):
                raise ConfigError(f"DATAPIPE_POD_RESOURCES[{component!r}][{kind!r}] must be an object")
            for res, qty in values.items():
                if res not in ("cpu", "memory") or not _QUANTITY.match(str(qty)):
                    raise ConfigError(f"DATAPIPE_POD_RESOURCES[{component!r}][{kind!r}]: bad {res}={qty!r}")
                merged[component][kind][res] = str(qty)
    return merged  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Settings:
    """Everything the DAGs need to know about where and how to run the pipeline."""

    runtime: Runtime = "kubernetes"
    # Kubernetes: where the pods run and which images/Secrets they use.
    namespace: str = "datapipe"
    service_account: str = "datapipe-pipeline"
    image_extract: str = f"datapipe-extract:{DEFAULT_IMAGE_TAG}"
    image_transform: str = f"datapipe-transform:{DEFAULT_IMAGE_TAG}"
    image_pull_policy: str = "IfNotPresent"
    warehouse_secret: str = "datapipe-warehouse-writer"  # noqa: S105 - a Secret *name*, not a value
    api_secret: str = "datapipe-alphavantage"  # noqa: S105 - a Secret *name*, not a value
    pgsslmode: str = "prefer"
    # PGSSLROOTCERT of the pods when the server is verified: `system` (the image's CA store) or a path
    pgsslrootcert: str | None = None
    resources: dict[str, dict[str, dict[str, str]]] = field(default_factory=lambda: _resources(""))
    pod_startup_timeout_s: int = 600
    # Task behaviour.
    retries: int = 3
    retry_delay_s: int = 60
    max_retry_delay_s: int = 1800
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    schedule: str = "30 17 * * 1-5"
    schedule_timezone: str = "America/New_York"
    # A run still going after this long is stopped (failed, its running tasks skipped) and alerted.
    dagrun_timeout_min: int = 180
    # dbt: the manifest (parse time) and the project as seen by whoever runs dbt.
    dbt_manifest: Path = REPO_ROOT / "dbt" / "target" / "manifest.json"
    dbt_project_dir: str = "."
    dbt_profile: str | None = None
    dbt_target: str | None = None
    dbt_threads: int = DEFAULT_DBT_THREADS
    # Local runtime: repository checkout and its virtualenvs.
    repo_root: Path = REPO_ROOT
    venvs_dir: Path = REPO_ROOT / ".local" / "venvs"
    dbt_executable: Path = REPO_ROOT / ".local" / "venvs" / "transform" / "bin" / "dbt"
    # Alerts.
    airflow_base_url: str = "http://localhost:8080"
    alert_email_to: tuple[str, ...] = ()
    alert_email_from: str | None = None
    smtp_conn_id: str = "smtp_default"
    slack_conn_id: str | None = None
    warehouse_conn_id: str | None = None
    # Live quotes (the market_quotes_intraday DAG, docs/airflow.md). The key's tier: free keys have 25
    # requests a day, which the daily DAG needs, so the DAG is off for them unless forced.
    api_tier: Literal["free", "premium"] = "free"
    quotes_enabled: bool | None = None  # None: on for premium keys, off for free ones
    quotes_entitlement: str = "realtime"  # or "delayed" (the premium plan's live data)
    quotes_bulk: bool = False  # the key may ask REALTIME_BULK_QUOTES (100 symbols a request)
    quotes_requests_per_minute: int = 75  # the key's per-minute rate (premium plans start at 75)
    quotes_daily_budget: int | None = None  # requests a day in all; None: no daily limit
    quotes_daily_reserve: int | None = None  # of that budget, what the daily DAG keeps; None: 2 per symbol
    quotes_min_interval_min: int = 5
    # days of raw intraday payloads `extract quotes` keeps (EXTRACT_INTRADAY_RETENTION_DAYS); None: extract's default
    quotes_intraday_retention_days: int | None = None

    @property
    def quotes_on(self) -> bool:
        """Is the quotes DAG scheduled: premium keys by default, free ones only when forced."""
        return self.api_tier == "premium" if self.quotes_enabled is None else self.quotes_enabled

    def quotes_plan(self) -> QuotaPlan:
        """The quotes DAG's interval within the key's budgets (datapipe_common.intraday)."""
        reserve = 2 * len(self.symbols) if self.quotes_daily_reserve is None else self.quotes_daily_reserve
        return plan_interval(len(self.symbols), bulk=self.quotes_bulk,
                             requests_per_minute=self.quotes_requests_per_minute,
                             daily_budget=self.quotes_daily_budget, reserved_per_day=reserve,
                             min_interval_min=self.quotes_min_interval_min)

    @property
    def quotes_env(self) -> dict[str, str]:
        """The quotes extract step's non-secret environment (extract's settings, docs/extract.md)."""
        env = {"ALPHAVANTAGE_ENTITLEMENT": self.quotes_entitlement if self.api_tier == "premium" else "",
               "ALPHAVANTAGE_BULK_QUOTES": "true" if self.quotes_bulk else "false",
               "ALPHAVANTAGE_REQUESTS_PER_MINUTE": str(self.quotes_requests_per_minute)}
        if self.quotes_intraday_retention_days is not None:
            env["EXTRACT_INTRADAY_RETENTION_DAYS"] = str(self.quotes_intraday_retention_days)
        return env

    @property
    def is_local(self) -> bool:
        return self.runtime == "local"

    @property
    def channels(self) -> Channels:
        """Where alerts go (datapipe_dags.notify)."""
        return Channels(email_to=self.alert_email_to, email_from=self.alert_email_from,
                        smtp_conn_id=self.smtp_conn_id, slack_conn_id=self.slack_conn_id,
                        airflow_base_url=self.airflow_base_url)

    def image(self, component: str) -> str:
        images = {"extract": self.image_extract, "transform": self.image_transform}
        if component not in images:
            raise ConfigError(f"no image configured for component {component!r}")
        return images[component]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build the settings from an environment mapping (os.environ at the DAG file, a dict in tests)."""

        def get(var: str, default: str) -> str:
            value = env.get(var, "").strip()
            return value or default

        runtime = get("DATAPIPE_RUNTIME", "kubernetes").lower()
        if runtime not in ("local", "kubernetes"):
            raise ConfigError(f"DATAPIPE_RUNTIME={runtime!r}: use 'local' or 'kubernetes'")
        repo_root = Path(get("DATAPIPE_REPO_DIR", str(REPO_ROOT))).resolve()
        venvs_dir = Path(get("DATAPIPE_LOCAL_VENVS", str(repo_root / ".local" / "venvs")))
        default_project_dir = str(repo_root / "dbt") if runtime == "local" else "."
        pull_policy = get("DATAPIPE_IMAGE_PULL_POLICY", "IfNotPresent")
        if pull_policy not in ("Always", "IfNotPresent", "Never"):
            raise ConfigError(f"DATAPIPE_IMAGE_PULL_POLICY={pull_policy!r}: use Always, IfNotPresent or Never")
        sslmode = check_sslmode("DATAPIPE_PGSSLMODE", get("DATAPIPE_PGSSLMODE", "prefer"))
        # the alert channels: parsed leniently by notify (the health DAG needs that), refused here
        channels, problems = Channels.from_env(env)
        if problems:
            raise ConfigError(problems[0])
        warehouse_conn = env.get("DATAPIPE_WAREHOUSE_CONN_ID", "").strip() or None
        settings = cls(
            runtime=runtime,  # type: ignore[arg-type]
            namespace=_k8s_name("DATAPIPE_NAMESPACE", get("DATAPIPE_NAMESPACE", cls.namespace)),
            service_account=_k8s_name(
                "DATAPIPE_SERVICE_ACCOUNT", get("DATAPIPE_SERVICE_ACCOUNT", cls.service_account)
            ),
            image_extract=check_image("DATAPIPE_IMAGE_EXTRACT", get("DATAPIPE_IMAGE_EXTRACT", cls.image_extract)),
            image_transform=check_image(
                "DATAPIPE_IMAGE_TRANSFORM", get("DATAPIPE_IMAGE_TRANSFORM", cls.image_transform)
            ),
            image_pull_policy=pull_policy,
            warehouse_secret=_k8s_name(
                "DATAPIPE_WAREHOUSE_SECRET", get("DATAPIPE_WAREHOUSE_SECRET", cls.warehouse_secret)
            ),
            api_secret=_k8s_name("DATAPIPE_API_SECRET", get("DATAPIPE_API_SECRET", cls.api_secret)),
            pgsslmode=sslmode,
            pgsslrootcert=get("DATAPIPE_PGSSLROOTCERT", "") or None,
            resources=_resources(env.get("DATAPIPE_POD_RESOURCES", "")),
            pod_startup_timeout_s=env_int(
                env, "DATAPIPE_POD_STARTUP_TIMEOUT_SECONDS", cls.pod_startup_timeout_s, minimum=1
            ),
            retries=env_int(env, "DATAPIPE_TASK_RETRIES", cls.retries, minimum=0),
            retry_delay_s=env_int(env, "DATAPIPE_RETRY_DELAY_SECONDS", cls.retry_delay_s, minimum=1),
            max_retry_delay_s=env_int(env, "DATAPIPE_MAX_RETRY_DELAY_SECONDS", cls.max_retry_delay_s, minimum=1),
            symbols=symbols_from_env(env),
            schedule=get("DATAPIPE_SCHEDULE", cls.schedule),
            schedule_timezone=get("DATAPIPE_SCHEDULE_TIMEZONE", cls.schedule_timezone),
            dagrun_timeout_min=env_int(env, "DATAPIPE_DAGRUN_TIMEOUT_MINUTES", cls.dagrun_timeout_min, minimum=1),
            dbt_manifest=Path(get("DATAPIPE_DBT_MANIFEST", str(repo_root / "dbt" / "target" / "manifest.json"))),
            dbt_project_dir=get("DATAPIPE_DBT_PROJECT_DIR", default_project_dir),
            dbt_profile=env.get("DATAPIPE_DBT_PROFILE", "").strip() or None,
            dbt_target=env.get("DATAPIPE_DBT_TARGET", "").strip() or None,
            dbt_threads=env_int(env, "DATAPIPE_DBT_THREADS", cls.dbt_threads, minimum=1),
            repo_root=repo_root,
            venvs_dir=venvs_dir,
            dbt_executable=Path(get("DATAPIPE_DBT_EXECUTABLE", str(venvs_dir / "transform" / "bin" / "dbt"))),
            airflow_base_url=channels.airflow_base_url,
            alert_email_to=channels.email_to,
            alert_email_from=channels.email_from,
            smtp_conn_id=channels.smtp_conn_id,
            slack_conn_id=channels.slack_conn_id,
            warehouse_conn_id=_conn_id("DATAPIPE_WAREHOUSE_CONN_ID", warehouse_conn) if warehouse_conn else None,
        )
        settings = _with_quotes(settings, env)
        if settings.max_retry_delay_s < settings.retry_delay_s:
            raise ConfigError(
                f"DATAPIPE_MAX_RETRY_DELAY_SECONDS={settings.max_retry_delay_s} is below "
                f"DATAPIPE_RETRY_DELAY_SECONDS={settings.retry_delay_s}"
            )
        return settings


def _flag(env: Mapping[str, str], var: str) -> bool | None:
    raw = env.get(var, "").strip().lower()
    if not raw:
        return None
    if raw not in ("1", "0", "true", "false", "yes", "no"):
        raise ConfigError(f"{var}={raw!r}: use true or false")
    return raw in ("1", "true", "yes")


def _with_quotes(settings: Settings, env: Mapping[str, str]) -> Settings:
    """The DATAPIPE_API_TIER and DATAPIPE_QUOTES_* variables (docs/airflow.md)."""
    import dataclasses

    tier = env.get("DATAPIPE_API_TIER", "").strip().lower() or "free"
    if tier not in ("free", "premium"):
        raise ConfigError(f"DATAPIPE_API_TIER={tier!r}: use free or premium (the Alpha Vantage key's plan)")
    entitlement = env.get("DATAPIPE_QUOTES_ENTITLEMENT", "").strip().lower() or "realtime"
    if entitlement not in ("realtime", "delayed"):
        raise ConfigError(f"DATAPIPE_QUOTES_ENTITLEMENT={entitlement!r}: use realtime or delayed")
    budget = env_int(env, "DATAPIPE_QUOTES_DAILY_BUDGET", 0, minimum=0)
    reserve = env.get("DATAPIPE_QUOTES_DAILY_RESERVE", "").strip()
    minimum = env_int(env, "DATAPIPE_QUOTES_MIN_INTERVAL_MINUTES", 5, minimum=1, maximum=INTERVALS_MIN[-1])
    retention = env.get("DATAPIPE_QUOTES_INTRADAY_RETENTION_DAYS", "").strip()
    return dataclasses.replace(
        settings,
        api_tier=tier,  # type: ignore[arg-type]
        quotes_enabled=_flag(env, "DATAPIPE_QUOTES_ENABLED"),
        quotes_entitlement=entitlement,
        quotes_bulk=bool(_flag(env, "DATAPIPE_QUOTES_BULK")),
        quotes_requests_per_minute=env_int(env, "DATAPIPE_QUOTES_REQUESTS_PER_MINUTE", 75, minimum=1),
        quotes_daily_budget=budget or None,
        quotes_daily_reserve=env_int(env, "DATAPIPE_QUOTES_DAILY_RESERVE", 0, minimum=0) if reserve else None,
        quotes_min_interval_min=minimum,
        quotes_intraday_retention_days=(env_int(env, "DATAPIPE_QUOTES_INTRADAY_RETENTION_DAYS", 0, minimum=0)
                                        if retention else None),
    )
