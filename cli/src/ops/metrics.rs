//! What `sealer reconcile` exposes to Prometheus (`--metrics-addr`): ticks by result, the last success,
//! drift and resources by kind, apply durations and hook runs, in the text format on `/metrics`, and
//! `/healthz`. The registry is the `prometheus` crate's; the server is hyper's.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::Bytes;
use prometheus::{
    Encoder as _, Gauge, Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use sealer_engine::Kind;

use super::error::{err, Result};
use super::reconcile::{Tick, TickResult};

pub struct Metrics {
    registry: Registry,
    pub reconcile_total: IntCounterVec,
    pub last_success: Gauge,
    pub drift: IntGaugeVec,
    pub resources: IntGaugeVec,
    pub apply_duration: Histogram,
    pub hook_runs: IntCounterVec,
    /// What hooks wrote to `$METRICS_PATH`.
    hook_metrics: Mutex<HookMetrics>,
}

impl Metrics {
    pub fn new() -> Result<Metrics> {
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
            Opts::new("sealer_hook_runs_total", "Hook runs by binding (schedule or kubernetes) and result"),
            &["hook", "result"],
        )?;
        registry.register(Box::new(reconcile_total.clone()))?;
        registry.register(Box::new(last_success.clone()))?;
        registry.register(Box::new(drift.clone()))?;
        registry.register(Box::new(resources.clone()))?;
        registry.register(Box::new(apply_duration.clone()))?;
        registry.register(Box::new(hook_runs.clone()))?;
        let hook_metrics = Mutex::new(HookMetrics::default());
        Ok(Metrics {
            registry,
            reconcile_total,
            last_success,
            drift,
            resources,
            apply_duration,
            hook_runs,
            hook_metrics,
        })
    }

    /// What a tick did: its result, its hook runs, its apply's duration, and the drift of every tick that
    /// planned (a refused one too: its plan is known). `kinds_seen` are the kinds that drifted in earlier
    /// ticks: one that drifted before and not now is at 0, not absent.
    pub fn record_tick(&self, tick: &Tick, kinds_seen: &mut BTreeSet<Kind>) {
        for run in &tick.hook_runs {
            let result = if run.outcome.is_ok() { "ok" } else { "failed" };
            self.hook_runs.with_label_values(&[run.binding.as_str(), result]).inc();
            self.hook_metrics.lock().unwrap_or_else(std::sync::PoisonError::into_inner).record(&run.metrics);
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

    /// Every metric in Prometheus' text format: sealer's, then those the hooks wrote.
    pub fn encode(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding what the registry gathered cannot fail for the text format; an empty page says so.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        let hooks = self.hook_metrics.lock().unwrap_or_else(std::sync::PoisonError::into_inner).encode();
        String::from_utf8_lossy(&buffer).into_owned() + &hooks
    }

    /// Serves `/metrics` and `/healthz` on `addr` from a thread of its own; the address is bound before
    /// this returns, so a taken port is an error here.
    pub fn serve(self: &Arc<Self>, addr: SocketAddr) -> Result<SocketAddr> {
        let listener =
            std::net::TcpListener::bind(addr).map_err(|e| err!("--metrics-addr {addr}: cannot listen: {e}"))?;
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

/// The metrics hooks write to `$METRICS_PATH`, in shell-operator's format: a JSON object a line,
/// `{"name", "action": "set"|"add", "value", "labels"}`; gauges, by name and labels. A line that is not
/// such a metric (a bad name, label or value) is dropped; at most [`HookMetrics::MAX_SERIES`] series.
#[derive(Default)]
struct HookMetrics {
    series: BTreeMap<(String, Vec<(String, String)>), f64>,
}

#[derive(serde::Deserialize)]
struct HookMetric {
    name: String,
    #[serde(default = "set")]
    action: String,
    value: f64,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

fn set() -> String {
    "set".into()
}

impl HookMetrics {
    const MAX_SERIES: usize = 10_000;

    fn record(&mut self, lines: &[String]) {
        let name_ok = |n: &str, colon: bool| {
            n.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || (colon && b == b':'))
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || (colon && b == b':'))
        };
        for line in lines {
            let Ok(m) = serde_json::from_str::<HookMetric>(line) else { continue };
            if !name_ok(&m.name, true) || m.name.starts_with("sealer_") || !m.value.is_finite() {
                continue;
            }
            // `__` names are Prometheus' own; a long value is a mistake, not a label.
            if m.labels.iter().any(|(k, v)| !name_ok(k, false) || k.starts_with("__") || v.len() > 1024) {
                continue;
            }
            let key = (m.name, m.labels.into_iter().collect());
            if !self.series.contains_key(&key) && self.series.len() >= Self::MAX_SERIES {
                continue;
            }
            let value = match m.action.as_str() {
                "add" => self.series.get(&key).copied().unwrap_or(0.0) + m.value,
                "set" => m.value,
                _ => continue,
            };
            // A sum that overflowed is not a sample the text format can carry.
            if value.is_finite() {
                self.series.insert(key, value);
            }
        }
    }

    fn encode(&self) -> String {
        let mut out = String::new();
        let mut last = "";
        for ((name, labels), value) in &self.series {
            if name != last {
                out.push_str(&format!("# TYPE {name} gauge\n"));
                last = name;
            }
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
                .collect();
            let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
            out.push_str(&format!("{name}{labels} {value}\n"));
        }
        out
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
    fn hook_metrics_are_set_and_added_by_name_and_labels_and_bad_lines_are_dropped() {
        let mut m = HookMetrics::default();
        let lines: Vec<String> = [
            r#"{"name":"installs_total","action":"add","value":1,"labels":{"component":"a"}}"#,
            r#"{"name":"installs_total","action":"add","value":2,"labels":{"component":"a"}}"#,
            r#"{"name":"installs_total","action":"add","value":1,"labels":{"component":"b\"c"}}"#,
            r#"{"name":"enabled","value":3}"#,
            r#"{"name":"enabled","action":"set","value":2}"#,
            r#"{"name":"bad name","value":1}"#,
            r#"{"name":"sealer_reconcile_total","value":1}"#,
            r#"{"name":"x","value":1,"labels":{"bad-label":"v"}}"#,
            "not json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        m.record(&lines);
        assert_eq!(
            m.encode(),
            "# TYPE enabled gauge\nenabled 2\n# TYPE installs_total gauge\ninstalls_total{component=\"a\"} 3\n\
             installs_total{component=\"b\\\"c\"} 1\n"
        );
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
