"""The real Prometheus scrapes daemon.engine.metrics.start_metrics_server, which answers its OpenMetrics and
gzip Accept headers in uncompressed text format 0.0.4 (issue 15: 40% of the cost of a scrape)."""

from __future__ import annotations

import socket

from prometheus_client import CollectorRegistry

from daemon.core.outcome import PipelineOutcome
from daemon.core.stages import StageResult
from daemon.engine.metrics import STAGES, Metrics, start_metrics_server
from daemon.engine.progress import MetricsRecorder
from tests.integration.services import StartPrometheus


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_prometheus_ingests_the_text_format_it_did_not_ask_for_first(prometheus: StartPrometheus) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, version="9.9.9")
    port = free_port()
    httpd, _ = start_metrics_server(port, "127.0.0.1", registry, poll_interval_s=0.1)
    try:
        scrape = {"job_name": "retraind", "scrape_interval": "1s",
                  "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}  # fmt: skip
        prom = prometheus([scrape])
        prom.wait_for('up{job="retraind"} == 1', 30)
        prom.wait_for('retraind_build_info{job="retraind", version="9.9.9"} == 1', 30)
        reporter = MetricsRecorder(metrics, clock=lambda: 1000.0)
        train = StageResult("train", "", {"metrics": {"f1_score_weighted": 0.73}})
        for result in ({stage: StageResult(stage, "") for stage in STAGES} | {"train": train}).values():
            reporter.stage_finished("r", result, 3.0)
        reporter.run_finished(PipelineOutcome("r", {"train": train}, {}, 15.0, trigger="data"))
        prom.wait_for('retraind_runs_total{outcome="succeeded", trigger="data"} == 1', 30)
        le_5s = 'retraind_stage_duration_seconds_bucket{outcome="success", le="5.0"} == 1'
        buckets = prom.wait_for(le_5s, 30)
        assert {b["metric"]["stage"] for b in buckets} == set(STAGES)
        (f1,) = prom.query('retraind_last_run_f1{job="retraind"}')
        assert float(f1["value"][1]) == 0.73
        assert prom.query('scrape_samples_scraped{job="retraind"} > 0')
    finally:
        httpd.shutdown()
        httpd.server_close()
