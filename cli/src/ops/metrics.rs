//! What `sealer reconcile` exposes to Prometheus (`--metrics-addr`): ticks by result, the last success,
//! drift and resources by kind, apply durations and hook runs, in the text format on `/metrics`, and
//! `/healthz`. The registry is the `prometheus` crate's; the server is hyper's.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use prometheus::{
    Encoder as _, Gauge, Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use sealer_engine::Kind;

use super::reconcile::{Tick, TickResult};

pub struct Metrics {
    registry: Registry,
    pub reconcile_total: IntCounterVec,
    pub last_success: Gauge,
    pub drift: IntGaugeVec,
    pub resources: IntGaugeVec,
    pub apply_duration: Histogram,
    pub hook_runs: IntCounterVec,
}

impl Metrics {
    pub fn new() -> anyhow::Result<Metrics> {
        let registry = Registry::new();
        let reconcile_total =
            IntCounterVec::new(Opts::new("sealer_reconcile_total", "Reconcile ticks by result"), &["result"])?;
        let last_success = Gauge::new(
            "sealer_reconcile_last_success_timestamp_seconds",
            "When a tick last ended without error (Unix time)",
        )?;
        let drift = IntGaugeVec::new(
            Opts::new("sealer_drift_resources", "Resources the last tick's plan would change, by kind"),
            &["kind"],
        )?;
        let resources = IntGaugeVec::new(
            Opts::new("sealer_resources", "Resources in the state after the last tick, by kind and status"),
            &["kind", "status"],
        )?;
        let apply_duration = Histogram::with_opts(
            HistogramOpts::new("sealer_apply_duration_seconds", "How long the applies of reconcile ticks took")
                .buckets(vec![0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0]),
        )?;
        let hook_runs = IntCounterVec::new(
            Opts::new("sealer_hook_runs_total", "Scheduled hook runs by hook and result"),
            &["hook", "result"],
        )?;
        registry.register(Box::new(reconcile_total.clone()))?;
        registry.register(Box::new(last_success.clone()))?;
        registry.register(Box::new(drift.clone()))?;
        registry.register(Box::new(resources.clone()))?;
        registry.register(Box::new(apply_duration.clone()))?;
        registry.register(Box::new(hook_runs.clone()))?;
        Ok(Metrics { registry, reconcile_total, last_success, drift, resources, apply_duration, hook_runs })
    }

    /// What a tick did: its result, its hook runs, its apply's duration, and the drift of every tick that
    /// planned (a refused one too: its plan is known). `kinds_seen` are the kinds that drifted in earlier
    /// ticks: one that drifted before and not now is at 0, not absent.
    pub fn record_tick(&self, tick: &Tick, kinds_seen: &mut BTreeSet<Kind>) {
        for run in &tick.hook_runs {
            let result = if run.outcome.is_ok() { "ok" } else { "failed" };
            self.hook_runs.with_label_values(&[run.hook.name.as_str(), result]).inc();
        }
        self.reconcile_total.with_label_values(&[tick.result.as_str()]).inc();
        if tick.result.succeeded() {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            self.last_success.set(now.as_secs_f64());
        }
        if matches!(tick.result, TickResult::NoChanges | TickResult::Drift | TickResult::Applied | TickResult::Refused)
        {
            kinds_seen.extend(tick.drift.keys().copied());
            for kind in kinds_seen.iter() {
                let n = tick.drift.get(kind).copied().unwrap_or(0);
                self.drift.with_label_values(&[kind.as_str()]).set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        if let Some(seconds) = tick.apply_seconds {
            self.apply_duration.observe(seconds);
        }
    }

    /// Every metric in Prometheus' text format.
    pub fn encode(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding what the registry gathered cannot fail for the text format; an empty page says so.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8_lossy(&buffer).into_owned()
    }

    /// Serves `/metrics` and `/healthz` on `addr` from a thread of its own; the address is bound before
    /// this returns, so a taken port is an error here.
    pub fn serve(self: &Arc<Self>, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| anyhow::anyhow!("--metrics-addr {addr}: cannot listen: {e}"))?;
        listener.set_nonblocking(true)?;
        let bound = listener.local_addr()?;
        let metrics = Arc::clone(self);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
                loop {
                    let Ok((stream, _)) = listener.accept().await else { continue };
                    let metrics = Arc::clone(&metrics);
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let metrics = Arc::clone(&metrics);
                            async move { Ok::<_, std::convert::Infallible>(respond(&metrics, req.uri().path())) }
                        });
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                    });
                }
            });
        });
        Ok(bound)
    }
}

fn respond(metrics: &Metrics, path: &str) -> hyper::Response<Full<Bytes>> {
    let (status, content_type, body) = match path {
        "/metrics" => (200, "text/plain; version=0.0.4", metrics.encode()),
        "/healthz" => (200, "text/plain", "ok\n".to_string()),
        _ => (404, "text/plain", "not found: /metrics or /healthz\n".to_string()),
    };
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_every_family_and_the_server_answers() {
        let metrics = Arc::new(Metrics::new().unwrap());
        metrics.reconcile_total.with_label_values(&["applied"]).inc();
        metrics.drift.with_label_values(&["label"]).set(2);
        metrics.apply_duration.observe(1.5);
        metrics.hook_runs.with_label_values(&["nightly", "ok"]).inc();
        let page = metrics.encode();
        for line in [
            "sealer_reconcile_total{result=\"applied\"} 1",
            "sealer_drift_resources{kind=\"label\"} 2",
            "sealer_apply_duration_seconds_count 1",
            "sealer_hook_runs_total{hook=\"nightly\",result=\"ok\"} 1",
            "# TYPE sealer_reconcile_last_success_timestamp_seconds gauge",
        ] {
            assert!(page.contains(line), "{line} in\n{page}");
        }
        let addr = metrics.serve("127.0.0.1:0".parse().unwrap()).unwrap();
        use std::io::{Read as _, Write as _};
        for (path, expect) in [("/metrics", "sealer_drift_resources"), ("/healthz", "ok"), ("/nope", "404")] {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            assert!(answer.contains(expect), "{path}: {answer}");
        }
    }

    fn tick(result: TickResult, drift: &[(Kind, usize)]) -> Tick {
        Tick {
            result,
            hook_runs: Vec::new(),
            cluster: Some("c".into()),
            drift: drift.iter().copied().collect(),
            message: String::new(),
            apply_seconds: None,
            hooks_checked: true,
        }
    }

    #[test]
    fn every_tick_that_planned_publishes_its_drift_by_kind() {
        let metrics = Metrics::new().unwrap();
        let mut seen = BTreeSet::new();
        metrics.record_tick(&tick(TickResult::Refused, &[(Kind::KubeadmInit, 2), (Kind::KubeadmJoin, 1)]), &mut seen);
        let page = metrics.encode();
        for line in [
            "sealer_drift_resources{kind=\"kubeadm-init\"} 2",
            "sealer_drift_resources{kind=\"kubeadm-join\"} 1",
            "sealer_reconcile_total{result=\"refused\"} 1",
        ] {
            assert!(page.contains(line), "{line} in\n{page}");
        }
        assert!(!page.contains("sealer_reconcile_last_success_timestamp_seconds 1"), "a refusal is no success");
        // A tick that could not plan leaves the last drift; the next that planned sets every kind seen.
        metrics.record_tick(&tick(TickResult::Locked, &[]), &mut seen);
        assert!(metrics.encode().contains("sealer_drift_resources{kind=\"kubeadm-init\"} 2"));
        metrics.record_tick(&tick(TickResult::Drift, &[(Kind::Label, 1)]), &mut seen);
        let page = metrics.encode();
        for line in [
            "sealer_drift_resources{kind=\"kubeadm-init\"} 0",
            "sealer_drift_resources{kind=\"kubeadm-join\"} 0",
            "sealer_drift_resources{kind=\"label\"} 1",
            "sealer_reconcile_total{result=\"drift\"} 1",
        ] {
            assert!(page.contains(line), "{line} in\n{page}");
        }
    }
}
