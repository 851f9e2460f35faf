"""Settings: defaults < TOML file < RETRAIND_* environment < CLI flags, validated once, frozen."""

from __future__ import annotations

import dataclasses
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.core.errors import ConfigError
from daemon.core.slurm import SlurmOptions, slurm_options
from daemon.core.vocab import EXECUTORS, TRIGGERS

ENV_PREFIX = "RETRAIND_"
DEFAULT_LABELS = ("negative", "neutral", "positive")


def _home(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("HOME", "~")).expanduser()


def _xdg(environ: Mapping[str, str], var: str, fallback: str) -> Path:
    """An XDG base directory; a relative value is invalid by the XDG spec and ignored."""
    value = environ.get(var, "")
    return (Path(value) if os.path.isabs(value) else _home(environ) / fallback) / "retraind"


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know, in base units (seconds, bytes, shares in 0..1)."""

    repo: Path
    data_dir: Path
    state_dir: Path
    tracking_uri: str
    experiment: str = "NLP Text Classification"
    model_name: str = "nlp-sentiment-classifier"
    containerfile: str = "Containerfile"
    image: str = "localhost/retraind"
    base_image: str = "localhost/retraind-base:bookworm"
    base_image_id: str = ""  # the pinned base (podman image ID): a build on any other base is refused
    data_glob: str = "*.csv"
    max_file_bytes: int = 2 * 1024**3  # a data file over this is refused by the gate
    labels: tuple[str, ...] = DEFAULT_LABELS
    max_empty_share: float = 0.05
    # The data gate (scripts/check-data.js), beyond columns and labels
    max_latin1_share: float = 0.5  # rows not valid UTF-8 (decoded as latin-1)
    max_duplicate_share: float = 0.5  # rows repeating an earlier text
    max_conflict_share: float = 0.05  # rows whose text appears with another label too
    min_rows_per_class: int = 1
    max_text_length: int = 10_000  # characters
    max_label_psi: float = 0.2  # drift of the label distribution against the last accepted drop
    max_length_psi: float = 0.25  # drift of the text-length distribution
    # The promotion gate (register stage): a new version becomes champion iff its weighted F1 is above
    # the floor and at least the champion's minus the tolerance; otherwise it becomes challenger.
    promotion_tolerance: float = 0.0  # e.g. 0.005 lets a retrain on fresh data win a near tie
    promotion_floor: float = 0.0  # operators should set a real floor (e.g. 0.6); 0 suits tiny samples
    mirror_stages: bool = True  # also move MLflow stages: champion Production, replaced one Archived
    # Several daemons on one registry: the gate's read of the champion and its move of the alias hold
    # a PostgreSQL advisory lock on this database (MLflow's backend: postgresql://user:pw@host/db).
    # "" = derived: a postgresql tracking_uri is itself the lock, a sqlite one a file lock beside it;
    # an http tracking server without it is safe for one daemon only (`retraind doctor` says so).
    promotion_lock_uri: str = ""
    reproduce_tolerance: float = 1e-7  # `reproduce`: relative difference of model parameters still equivalent
    # Training parameters live in the repository's params.toml (daemon/core/params.py); these override it
    seed: int | None = None
    test_size: float | None = None
    c: float | None = None
    # OpenBLAS picks its kernels by CPU and splits work by core count; both change the model's last
    # bits (docs/engineering-notes.md). Pinned in every container so machines train the same bytes.
    blas_coretype: str = (
        "Haswell"  # OPENBLAS_CORETYPE: AVX2 + FMA, every x86-64 server since 2013; "" = by CPU
    )
    blas_threads: int = 1  # OPENBLAS_NUM_THREADS; 0 = one per core
    # Where the stages' containers run: "local" (podman on this machine) or "slurm" (one Slurm job
    # per container, options per stage in the [slurm] table: daemon/core/slurm.py, docs/scale-out.md)
    executor: str = "local"
    slurm: SlurmOptions = dataclasses.field(default_factory=SlurmOptions)
    build_timeout_s: float = 3600.0
    stage_timeout_s: float = 3600.0
    stop_timeout_s: float = 10.0
    trigger: str = "manual"
    no_cache: bool = False  # build the image without podman's layer cache
    worktree: bool = False  # build the live worktree (uncommitted changes) instead of the commit
    # Retention (`retraind gc`, also run after every run)
    keep_runs: int = 20  # run directories kept, besides those the champion, challenger and cache need
    store_grace_s: float = 3600.0  # an object no kept run needs is collected only after this long
    # The daemon (`retraind watch`)
    branch: str = ""  # the branch whose commits trigger runs; "" = the one checked out at start
    quiet_s: float = 1.0  # debounce: fire after this long without a new change
    max_wait_s: float = 30.0  # ... or this long after the first change, so a steady stream fires
    marker_names: tuple[str, ...] = ()  # e.g. ("_SUCCESS", ".ready"): data counts once one appears
    schedule: tuple[str, ...] = ()  # cron expressions (5 fields) for scheduled retraining
    reconcile_interval_s: float = 300.0  # how often to look for changes the watchers missed
    supersede: bool = False  # a newer commit stops the running pipeline
    # Metrics
    metrics_addr: str = "127.0.0.1"  # the daemon's /metrics endpoint
    metrics_port: int = 9464  # 0: no endpoint
    pushgateway_url: str = ""  # `retraind run` pushes its metrics there when set
    textfile_dir: str = ""  # ... or writes retraind.prom there for node_exporter's textfile collector
    # Serving (`retraind serve`): the champion on serve_addr:serve_port, following the alias
    serve_addr: str = "127.0.0.1"
    serve_port: int = 8080
    serve_poll_s: float = 5.0  # how often to look at the champion alias
    serve_start_timeout_s: float = 120.0  # a new version not ready by then is not switched to
    serve_drain_s: float = 30.0  # how long requests at the old version may take to finish
    serve_retry_s: float = 300.0  # a version that failed to start is tried again after this long
    serve_max_body_bytes: int = 1024 * 1024  # a larger request body is refused (413)
    serve_max_texts: int = 1000  # texts in one request
    serve_shadow: bool = False  # the challenger gets a copy of each scoring request, off the response path
    # Notifications (daemon/core/notify.py): targets and their secrets live in the notify file
    # (chmod 600; default $XDG_CONFIG_HOME/retraind/notify.toml) or RETRAIND_NOTIFY_WEBHOOK_URL
    notify_file: Path | None = None
    mlflow_ui_url: str = ""  # e.g. http://mlflow.lab:5000: messages link the MLflow run and its report
    notify_wait_s: float = 10.0  # `retraind run` tries to deliver this long before it exits
    notify_timeout_s: float = 10.0  # one HTTP request to a target
    # Set by systemd in the unit's environment, not by users
    notify_socket: str = ""
    watchdog_usec: int = 0
    journal_stream: str = ""  # stdout is the journal: prefix lines with their syslog priority

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "runs"


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def absolute_path(value: Any, cwd: Path, home: Path) -> Path:
    """`~` expanded, then made absolute against cwd: podman reads a relative volume as a named one."""
    text = str(value)
    if text == "~" or text.startswith("~/"):
        text = str(home) + text[1:]
    return Path(os.path.normpath(cwd / Path(text).expanduser()))


def _coerce(name: str, value: Any, cwd: Path, home: Path) -> Any:
    kind = str(_FIELDS[name].type).removesuffix(" | None")
    try:
        if kind == "Path":
            return absolute_path(value, cwd, home)
        if kind == "SlurmOptions":
            return value if isinstance(value, SlurmOptions) else slurm_options(value, cwd, home)
        if kind == "float":
            return float(value)
        if kind == "int":
            return int(value)
        if kind == "bool":
            if isinstance(value, str):
                if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError("expected true or false")
                return value.lower() in ("1", "true", "yes")
            return bool(value)
        if kind.startswith("tuple"):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(i).strip() for i in items if str(i).strip())
        return str(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"setting {name!r}: cannot use {value!r} ({e})") from e


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    found = {
        name: environ[ENV_PREFIX + name.upper()] for name in _FIELDS if ENV_PREFIX + name.upper() in environ
    }
    if "tracking_uri" not in found and environ.get("MLFLOW_TRACKING_URI"):
        found["tracking_uri"] = environ["MLFLOW_TRACKING_URI"]
    systemd_vars = (
        ("NOTIFY_SOCKET", "notify_socket"),
        ("WATCHDOG_USEC", "watchdog_usec"),
        ("JOURNAL_STREAM", "journal_stream"),
    )
    for systemd_var, name in systemd_vars:
        if environ.get(systemd_var):
            found[name] = environ[systemd_var]
    return found


def _from_file(path: Path) -> dict[str, Any]:
    try:
        loaded = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(
            f"cannot read configuration {path}: {e.strerror or e}; make it a file you can read, "
            "or name another with --config or RETRAIND_CONFIG"
        ) from e
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read configuration {path}: {e}; fix the file (TOML, UTF-8)") from e
    unknown = sorted(set(loaded) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(_FIELDS)}")
    return loaded


def load_settings(
    cli: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Merge the four layers and validate them once; relative paths are taken from cwd."""
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    state_dir = _xdg(environ, "XDG_STATE_HOME", ".local/state")
    merged: dict[str, Any] = {
        "repo": cwd,
        "data_dir": _xdg(environ, "XDG_DATA_HOME", ".local/share") / "data",
        "state_dir": state_dir,
    }
    default_file = _xdg(environ, "XDG_CONFIG_HOME", ".config") / "config.toml"
    path = config_file or (Path(environ[ENV_PREFIX + "CONFIG"]) if ENV_PREFIX + "CONFIG" in environ else None)
    if path is not None or default_file.is_file():
        merged.update(_from_file(path or default_file))
    merged.update(_from_env(environ))
    merged.update({k: v for k, v in (cli or {}).items() if v is not None})
    home = _home(environ)
    values = {name: _coerce(name, value, cwd, home) for name, value in merged.items()}
    values.setdefault("tracking_uri", f"sqlite:///{values['state_dir'] / 'mlflow.db'}")
    return _validated(Settings(**values))


def _check_cron(expression: str) -> None:
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(expression)
    except ValueError as e:
        raise ConfigError(f"schedule: {expression!r} is not a 5-field cron expression ({e})") from e


def _validated(s: Settings) -> Settings:
    if s.test_size is not None and not 0.0 < s.test_size < 1.0:
        raise ConfigError(f"test_size must be between 0 and 1, got {s.test_size}")
    if not 0.0 <= s.max_empty_share <= 1.0:
        raise ConfigError(f"max_empty_share must be between 0 and 1, got {s.max_empty_share}")
    for name in ("promotion_tolerance", "promotion_floor"):
        if not 0.0 <= getattr(s, name) <= 1.0:
            raise ConfigError(f"{name} must be between 0 and 1 (weighted F1), got {getattr(s, name)}")
    if s.reproduce_tolerance < 0:
        raise ConfigError(f"reproduce_tolerance must be >= 0, got {s.reproduce_tolerance}")
    if s.c is not None and s.c <= 0:
        raise ConfigError(f"c (inverse regularisation) must be positive, got {s.c}")
    if len(s.labels) < 2:
        raise ConfigError(f"labels needs at least two classes, got {s.labels}")
    if s.quiet_s <= 0 or s.max_wait_s < s.quiet_s:
        raise ConfigError(f"need 0 < quiet_s <= max_wait_s, got {s.quiet_s} and {s.max_wait_s}")
    for expression in s.schedule:
        _check_cron(expression)
    if not 0 < s.serve_port < 65536 or s.serve_max_body_bytes <= 0 or s.serve_max_texts <= 0:
        raise ConfigError("serve_port must be 1-65535 and serve_max_body_bytes, serve_max_texts positive")
    if s.executor not in EXECUTORS:
        raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)}, got {s.executor!r}")
    if s.trigger not in TRIGGERS:
        raise ConfigError(f"trigger must be one of {', '.join(TRIGGERS)}, got {s.trigger!r}")
    return s


def _check_dir(kind: str, path: Path, flag: str, create: str) -> None:
    try:
        st = path.stat()
    except FileNotFoundError as e:
        raise ConfigError(f"{kind} {path} does not exist: {create}, or pass {flag}") from e
    except OSError as e:
        raise ConfigError(f"cannot read {kind} {path}: {e.strerror or e}; pass {flag}") from e
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{kind} {path} is a file, not a directory: pass the directory with {flag}")
    if not os.access(path, os.R_OK | os.X_OK):
        raise ConfigError(f"{kind} {path} is not readable by this user: chmod u+rx it, or pass {flag}")


def check_inputs(s: Settings) -> None:
    """What `run` and `watch` read exists and is what it claims; once, at the start of the command.

    Each problem is one ConfigError (exit 78: systemd does not restart) that says what to do.
    """
    _check_repo(s.repo, s.branch)
    corpus = f"create it with the CSV files in it (the corpus: bash tools/fetch-corpus.sh {s.data_dir})"
    _check_dir("data directory", s.data_dir, "--data-dir", corpus)


def _check_repo(path: Path, branch: str) -> None:
    import pygit2  # here, not at import: most commands never look at the repository

    _check_dir("repository", path, "--repo", "clone or create it")
    found = pygit2.discover_repository(str(path))
    if found is None:
        raise ConfigError(f"{path} is not inside a git repository: run `git init` there, or pass --repo")
    try:
        repo = pygit2.Repository(found)
        bare, unborn = repo.is_bare, repo.head_is_unborn
    except pygit2.GitError as e:
        raise ConfigError(f"cannot read the git repository at {found}: {e}") from e
    if bare:
        raise ConfigError(f"{found} is a bare git repository: pass a checkout with --repo")
    if unborn:
        raise ConfigError(f"{repo.workdir}: no commit yet; commit the project first")
    if branch and f"refs/heads/{branch}" not in repo.references:
        raise ConfigError(f"branch {branch!r} is not in {repo.workdir}: pass an existing --branch")
