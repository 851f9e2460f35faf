"""Composition root: the one place that builds the real adapters and wires them together.

`retraind run` (run_once): prepare_run seals one commit and one data snapshot, then
daemon.engine.pipeline.run_stages runs build -> validate -> preprocess -> train -> register (the
handlers in handlers/registry.py), telling the recorders (console or log lines, metrics, the MLflow
warm-up, the drift reference) as it goes.

`retraind watch` (build_service), in the order an event travels: the intake (watchers, scheduler,
control socket) puts raw events on one queue -> the debouncer makes pipeline events of them -> the
run queue holds them, one run at a time -> the runner runs each -> the recorders (log line, metrics,
systemd status, warm-up, drift reference, journal row) hear of every stage and outcome.
"""

from __future__ import annotations

import fcntl
import functools
import queue
import secrets
import shutil
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from prometheus_client import CollectorRegistry

from daemon.adapters.champion import ChampionProbe
from daemon.adapters.control import ControlServer
from daemon.adapters.gitinfo import Pygit2Reader
from daemon.adapters.notify import Notifier
from daemon.adapters.notifyfile import load_targets
from daemon.adapters.podman import PodmanCli
from daemon.adapters.registry import MlflowRegistry, preload_mlflow
from daemon.adapters.slurm import COMMANDS as SLURM_COMMANDS
from daemon.adapters.slurm import JobEvent, SlurmExecutor
from daemon.adapters.snapshot import object_store, scan, take_snapshot
from daemon.adapters.tracking import MlflowTracker
from daemon.adapters.watch import RawEvent, Watcher
from daemon.adapters.webhooks import HttpSender
from daemon.core.config import Settings
from daemon.core.errors import ConfigError, RetraindError
from daemon.core.inputs import GitReader
from daemon.core.jobs import run_label
from daemon.core.notify import Target
from daemon.core.outcome import Fanout, PipelineOutcome, Recorder
from daemon.core.params import load_params
from daemon.core.promotion import GatePolicy
from daemon.core.records import Delivery
from daemon.core.runqueue import RunQueue
from daemon.core.stages import ContainerRunner, Ports, RunContext, Stage
from daemon.core.vocab import SLURM
from daemon.engine.announce import Announcer, OutboxRecorder
from daemon.engine.courier import Courier
from daemon.engine.metrics import Metrics, start_metrics_server
from daemon.engine.pipeline import run_stages
from daemon.engine.progress import WarmUp
from daemon.engine.service import Hooks, Intake, Service, debouncer_for, held_writes
from daemon.engine.worker import DriftReference, Queued, Runner, daemon_recorder, merge
from daemon.state.journal import Journal
from daemon.state.notifications import Notifications
from daemon.state.outbox import Outbox
from daemon.state.retention import (
    Collected,
    collect,
    registered_runs,
    registry_pins,
    remove_run_dir,
    tree_bytes,
)
from daemon.state.stagecache import JournalStageCache
from handlers.registry import STAGES

GIT: GitReader = Pygit2Reader()  # the one git reader of the process (pygit2 holds no state between calls)


def new_run_id(now: datetime | None = None) -> str:
    """Sortable and unique: UTC time to the second plus 6 random hex digits."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dt%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


def remove_run_containers(settings: Settings, run_id: str) -> list[str]:
    """After an interruption: no container (or Slurm job) of this run may outlive it."""
    return container_runner(settings).stop_labelled(run_label(run_id), settings.stop_timeout_s)


def container_runner(settings: Settings, journal: Journal | None = None) -> ContainerRunner:
    """The executor the settings choose: podman here, or a Slurm job per stage container (its jobs
    in the log lines and, for the daemon, in the journal)."""
    local = PodmanCli(stop_timeout_s=settings.stop_timeout_s)
    if settings.executor != SLURM:
        return local
    missing = [tool for tool in SLURM_COMMANDS if shutil.which(tool) is None]
    if missing:
        raise ConfigError(
            f'executor = "slurm" but {", ".join(missing)} is not on PATH: install Slurm\'s client '
            "commands (Debian: slurm-client) and its configuration (/etc/slurm/slurm.conf or "
            'SLURM_CONF), or set executor = "local"'
        )
    return SlurmExecutor(settings.slurm, local, on_job=JobLedger(journal))


class JobLedger:
    """Where a Slurm job's submission and end are told: a log line each, and the journal's row."""

    def __init__(self, journal: Journal | None) -> None:
        self.journal = journal

    def __call__(self, event: JobEvent) -> None:
        log = structlog.get_logger()
        state = event.state
        if state is None:
            log.info("slurm_job_submitted", run_id=event.run_id, stage=event.stage, job_id=event.job_id)
        else:
            log.info(
                "slurm_job_ended",
                run_id=event.run_id,
                stage=event.stage,
                job_id=event.job_id,
                state=state.state,
                reason=state.reason,
                node=state.node,
                exit_code=state.exit_code,
            )
        if self.journal is None:
            return
        try:
            if state is None:
                self.journal.job_submitted(event.job_id, event.name, event.run_id, event.stage)
            else:
                self.journal.job_ended(
                    event.job_id, event.name, state.state, state.reason, state.node, state.exit_code
                )
        except RetraindError as e:  # a full disk: the log line stands; the run goes on
            log.warning("slurm_job_unrecorded", job_id=event.job_id, error=str(e))


def real_ports(settings: Settings, journal: Journal | None = None) -> Ports:
    if shutil.which("podman") is None:
        raise ConfigError(
            "podman is not installed: sudo apt-get install podman runc uidmap "
            "(then bash tools/setup-podman.sh)"
        )
    policy = GatePolicy(settings.promotion_tolerance, settings.promotion_floor, settings.mirror_stages)
    artifacts, lock_uri = settings.state_dir / "artifacts", settings.promotion_lock_uri
    tracker = MlflowTracker(settings.tracking_uri, artifacts, policy=policy, lock_uri=lock_uri)
    containers = container_runner(settings, journal)
    if journal is None:
        return Ports(containers, tracker)
    return Ports(containers, tracker, Outbox(journal), JournalStageCache(journal))


def prepare_run(settings: Settings, run_id: str, trigger: str | None = None) -> RunContext:
    """Seal what a run reads in a fresh run directory: one commit, exported (the tip of the watched
    branch, HEAD without one; the live worktree only with --worktree), its params.toml, and a
    snapshot of the data drop in the object store. The trigger: `retraind run --trigger` unless given."""
    reader = GIT
    run_dir = settings.runs_dir / run_id
    run_dir.mkdir(parents=True)
    try:
        if settings.worktree:
            git = reader.read(settings.repo)
        else:
            commit = reader.ref_commit(settings.repo, settings.branch)
            branch = settings.branch or reader.read_branch(settings.repo)
            git = reader.export(settings.repo, commit, run_dir / "source", branch)
        overrides = {"seed": settings.seed, "test_size": settings.test_size, "c": settings.c}
        params = load_params(git.workdir, overrides)
        manifest = take_snapshot(settings, run_dir)
    except BaseException:  # a half export or snapshot is no use, and on a full disk it is the space
        remove_run_dir(run_dir)
        raise
    return RunContext(run_id, run_dir, settings, git, manifest, params, trigger=trigger or settings.trigger)


def run_once(
    settings: Settings,
    recorder: Recorder,
    ports: Ports | None = None,
    stages: Mapping[str, Stage] = STAGES,
    run_id: str | None = None,
    use_cache: bool = True,
) -> PipelineOutcome:
    """Run the whole pipeline once for the repository and data the settings name.

    With the real adapters, registrations that an earlier MLflow outage left in the outbox are sent
    first, and this run's registration waits there too if the server is down.
    """
    if ports is not None:
        ctx = prepare_run(settings, run_id or new_run_id())
        return run_stages(ctx, list(stages.values()), ports, recorder, use_cache=use_cache)
    # MLflow is imported once validate has really passed, as the daemon does: by then the validate
    # container no longer needs both cores, and the training leaves one idle until register. Only a
    # run that succeeded makes its drop the next drift reference.
    # Its notifications go into the journal's outbox, and are delivered before it exits (a bounded
    # wait); what is left there waits for the next run or the daemon.
    targets = load_targets(settings)  # a bad notify file is refused before anything is written
    ctx = prepare_run(settings, run_id or new_run_id())
    warm_up = WarmUp(lambda: preload_mlflow(settings.tracking_uri))
    journal = Journal.open(settings.state_dir / "journal.db")
    try:
        notifications = Notifications(journal)
        announcer = Announcer(settings, targets)
        recorder = Fanout(
            recorder, warm_up, DriftReference(settings.state_dir), OutboxRecorder(announcer, notifications)
        )
        ports = real_ports(settings, journal)
        assert ports.outbox is not None
        for delivery in ports.outbox.flush(ports.tracker):
            announce_delivery(announcer, notifications, delivery)
        outcome = run_stages(ctx, list(stages.values()), ports, recorder, use_cache=use_cache)
        collect_after_run(settings, journal, outcome)
        deliver_before_exit(settings, notifications, targets)
        return outcome
    finally:
        journal.close()


def courier_for(settings: Settings, notifications: Notifications, targets: Sequence[Target],
                metrics: Metrics | None = None) -> Courier:  # fmt: skip
    return Courier(
        notifications, {t.name: t for t in targets}, HttpSender(settings.notify_timeout_s), metrics
    )


def announce_delivery(announcer: Announcer, notifications: Notifications, delivery: Delivery) -> None:
    """A registration the tracking outbox sent late is news: tracking_delivered, to who wants it."""
    notice = announcer.delivered(delivery, notifications.journal.now())
    if notice is not None:
        notifications.put(notice, announcer.route(notice))
        announcer.wake()


def deliver_before_exit(settings: Settings, notifications: Notifications, targets: Sequence[Target]) -> None:
    """`retraind run`'s bounded wait for its notifications; a receiver that is down costs at most
    notify_wait_s, and what it did not take stays in the journal."""
    if not notifications.backlog().waiting:
        return
    left = courier_for(settings, notifications, targets).drain(settings.notify_wait_s)
    if left:
        structlog.get_logger().warning(
            "notifications_waiting",
            count=left,
            advice="kept in the state journal: the daemon or the next `retraind run` delivers them",
        )


def collect_garbage(
    settings: Settings, journal: Journal, dry_run: bool = False, ask_registry: bool = True
) -> Collected:
    """Retention with the champion's and challenger's runs pinned (daemon/state/retention.py)."""

    def aliased_runs() -> set[str]:
        rows = MlflowRegistry(settings.tracking_uri).versions(settings.model_name)
        return {r.retraind_run_id for r in rows if r.aliases and r.retraind_run_id}

    pins = registry_pins(settings.state_dir, aliased_runs if ask_registry else None)
    if pins is None:
        pins = registered_runs(journal)
    return collect(settings.state_dir, journal, settings.keep_runs, settings.store_grace_s, pins, dry_run)


def _collect_quietly(settings: Settings, journal: Journal, metrics: Metrics) -> None:
    """The daemon's gc after each run: it asks the registry only when that run registered (MLflow is
    loaded then), as collect_after_run does, so an idle daemon never imports MLflow for it."""
    last = journal.recent_runs(1)
    registered = bool(last) and last[0].champion is not None  # the register stage ran, not from the cache
    done = collect_garbage(settings, journal, ask_registry=registered)
    metrics.state_bytes.set(tree_bytes(settings.state_dir))
    _log_collected(done)


def collect_after_run(settings: Settings, journal: Journal, outcome: PipelineOutcome) -> None:
    """gc after every run; it asks the registry only when the run registered (MLflow is loaded then),
    so an up-to-date run stays fast. Never fails the run."""
    try:
        done = collect_garbage(settings, journal, ask_registry=outcome.champion is not None)
    except (RetraindError, OSError) as e:
        structlog.get_logger().warning("gc_failed", run_id=outcome.run_id, error=str(e))
        return
    _log_collected(done, run_id=outcome.run_id)


def _log_collected(done: Collected, **fields: str) -> None:
    """One gc_finished line when gc removed anything."""
    if done.runs or done.objects:
        structlog.get_logger().info(
            "gc_finished",
            **fields,
            runs_removed=len(done.runs),
            objects_removed=len(done.objects),
            freed_bytes=done.freed_bytes,
        )


# -- the daemon (`retraind watch`) -------------------------------------------------------------


def head_commit(settings: Settings) -> str:
    """The watched branch's commit (HEAD's when no branch is configured)."""
    return GIT.ref_commit(settings.repo, settings.branch)


def data_sha256(settings: Settings) -> str:
    """The drop's digest as a run would record it: read into the store, so the run that may follow
    copies nothing again, and unreadable or special files count as the run counts them."""
    return scan(settings, object_store(settings)).sha256


def start_intake(settings: Settings, service: Intake) -> Callable[[], None]:
    """Watchers, the scheduler and the control socket, all feeding the service's raw queue;
    returns their stop function."""
    watcher = Watcher(settings.data_dir, GIT.git_dir(settings.repo), service.raw)
    scheduler = build_scheduler(settings, service.raw)
    control = ControlServer(settings.state_dir / "control.sock", control_handler(service))
    probe = ChampionProbe(settings.tracking_uri)  # in a child process: MLflow stays out of the daemon
    champion = ChampionGauge(probe, settings.model_name, service.metrics)
    scheduler.add_job(
        champion.refresh,
        "interval",
        seconds=settings.reconcile_interval_s,
        next_run_time=datetime.now(UTC),
        id="champion",
    )
    watcher.start()
    scheduler.start()
    control.start()

    def stop() -> None:
        control.stop()
        scheduler.shutdown(wait=False)
        watcher.stop()

    return stop


class ChampionGauge:
    """retraind_champion_f1 follows the registry, so a promote or rollback by hand shows up too."""

    def __init__(self, registry: Any, model_name: str, metrics: Metrics) -> None:
        self.registry, self.model_name, self.metrics = registry, model_name, metrics

    def refresh(self) -> float | None:
        try:
            f1: float | None = self.registry.champion_f1(self.model_name)
        except RetraindError as e:  # MLflow down: keep the last value, say so once per interval
            structlog.get_logger().warning("champion_refresh_failed", model=self.model_name, error=str(e))
            return None
        if f1 is not None:
            self.metrics.champion_f1.set(f1)
        return f1


def build_scheduler(settings: Settings, raw: queue.Queue[RawEvent]) -> BackgroundScheduler:
    """Cron retraining and the periodic reconcile, as RawEvents on the daemon's queue (UTC)."""
    scheduler = BackgroundScheduler(timezone="UTC")
    for expression in settings.schedule:
        trigger = CronTrigger.from_crontab(expression, timezone="UTC")
        scheduler.add_job(raw.put, trigger, args=[RawEvent("scheduled", expression)], id=f"cron {expression}")
    scheduler.add_job(
        raw.put,
        "interval",
        seconds=settings.reconcile_interval_s,
        args=[RawEvent("reconcile")],
        id="reconcile",
    )
    return scheduler


def control_handler(service: Intake) -> Callable[[dict[str, Any], int], dict[str, Any]]:
    def handle(request: dict[str, Any], uid: int) -> dict[str, Any]:
        if request.get("cmd") == "trigger":
            kind = "forced" if request.get("force") else "manual"
            service.raw.put(RawEvent(kind, str(request.get("who") or f"uid {uid}")))
            return {"ok": True, "accepted": True}
        if request.get("cmd") == "status":
            return {"ok": True, **service.snapshot()}
        return {"ok": False, "error": f"unknown command {request.get('cmd')!r}"}

    return handle


def hold_daemon_lock(state_dir: Path) -> IO[bytes]:
    """One daemon per state directory: an exclusive flock, released by the kernel when we die."""
    state_dir.mkdir(parents=True, exist_ok=True)
    handle = (state_dir / "daemon.lock").open("wb")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
        handle.close()
        raise ConfigError(f"another retraind daemon already uses {state_dir}") from e
    return handle


def serve_metrics(settings: Settings) -> Metrics:
    """The daemon's /metrics endpoint (127.0.0.1 by default), gauges restored from the journal."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    if settings.metrics_port:
        try:
            start_metrics_server(settings.metrics_port, settings.metrics_addr, registry)
        except OSError as e:
            raise ConfigError(
                f"cannot serve metrics on {settings.metrics_addr}:{settings.metrics_port}: {e}"
            ) from e
    return metrics


def build_service(settings: Settings, reload: Callable[[], Settings] | None = None) -> Service:
    """The composition root of `retraind watch`, in the order an event travels."""
    journal = Journal.open(settings.state_dir / "journal.db")
    metrics = serve_metrics(settings)
    metrics.restore(journal.gauges())
    metrics.state_bytes.set(tree_bytes(settings.state_dir))
    notifier = Notifier(settings.notify_socket)
    # 1. Intake: the watchers (data directory, the repository's refs), the scheduler (cron, the
    #    periodic reconcile) and the control socket put raw events on one queue (start_intake).
    raw: queue.Queue[RawEvent] = queue.Queue()
    # 2. The debouncer: bursts of raw events become one pipeline event once the inputs are quiet.
    debouncer = debouncer_for(settings)
    # 3. The run queue: one run at a time; what arrives during a run coalesces into one follow-up.
    runs: RunQueue[Queued] = RunQueue(merge, supersede_on_commit=settings.supersede)
    # 4. The runner: seals a commit and a data snapshot, runs the stages in rootless podman.
    writes = held_writes(metrics, raw)
    runner = Runner(prepare_run, real_ports(settings, journal), tuple(STAGES.values()), writes, metrics)
    # 5. The recorders: the log line, metrics, systemd's status, the MLflow warm-up, the drift
    #    reference and, last, the journal row.
    #    reference and, last, the journal row with the run's notifications (in one transaction),
    #    which the courier delivers from its own thread: a slow receiver never delays a run.
    warm_up = functools.partial(preload_mlflow, settings.tracking_uri)
    notifications = Notifications(journal)
    targets = load_targets(settings)
    courier = courier_for(settings, notifications, targets, metrics)
    announcer = Announcer(settings, targets, wake=courier.wake)
    recorder = daemon_recorder(journal, writes, notifier, metrics, settings.state_dir, warm_up, announcer)

    def start_background(s: Settings, intake: Intake) -> Callable[[], None]:
        stop_intake = start_intake(s, intake)
        courier.start()

        def stop() -> None:
            stop_intake()
            courier.stop()

        return stop

    def reload_all() -> Settings:  # SIGHUP: the settings and the notify file; a bad one keeps the old
        assert reload is not None
        fresh = reload()
        new_targets = load_targets(fresh)
        courier.use({t.name: t for t in new_targets})
        announcer.use(fresh, new_targets)
        return fresh

    hooks = Hooks(
        new_run_id=new_run_id,
        head_commit=head_commit,
        data_sha256=data_sha256,
        start_intake=start_background,
        reload=reload_all if reload is not None else None,
        collect=lambda s: _collect_quietly(s, journal, metrics),
        delivered=lambda d: announce_delivery(announcer, notifications, d),
    )
    return Service(settings, journal, raw, debouncer, runs, runner, recorder, hooks, notifier, metrics)
