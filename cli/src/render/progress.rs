//! Apply events for people (plain lines, or indicatif bars on a terminal) and for programs (JSON lines).

use std::collections::HashMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use sealer_engine::{Action, ApplyEvent, NodeOutcome, Reporter};
use sealer_providers::cluster::{CopyEvent, CopyProgress};

fn verb(action: Action) -> (&'static str, &'static str) {
    match action {
        Action::Create => ("Creating", "Creation"),
        Action::Update => ("Modifying", "Modifications"),
        Action::Replace => ("Replacing", "Replacement"),
        Action::Delete => ("Destroying", "Destruction"),
        Action::NoOp => ("Reading", "Read"),
    }
}

fn finished_line(event: &ApplyEvent) -> Option<(bool, String)> {
    let ApplyEvent::Finished { address, action, outcome, elapsed } = event else { return None };
    let secs = elapsed.as_secs_f64();
    Some(match outcome {
        NodeOutcome::Applied => (true, format!("{address}: {} complete after {secs:.1}s", verb(*action).1)),
        NodeOutcome::Failed(e) => (false, format!("{address}: failed after {secs:.1}s: {e}")),
        NodeOutcome::Skipped { because } => (false, format!("{address}: skipped because `{because}` failed")),
        NodeOutcome::Cancelled => (false, format!("{address}: not started (interrupted)")),
    })
}

/// The line of an image copy event; `None` for what only a bar shows.
fn copy_line(event: &CopyEvent) -> Option<String> {
    // The image's copies are named like its resources (`image.IP`); an application's, by app and host.
    let on = |what: &str, host: &std::net::IpAddr| {
        if what == "image" {
            format!("image.{host}")
        } else {
            format!("{what} (on {host})")
        }
    };
    Some(match event {
        CopyEvent::Planned { .. } => return None,
        CopyEvent::Delivered { what, host, bytes, from: None } => {
            format!("{}: {} copied from the workstation", on(what, host), human_bytes(*bytes))
        }
        CopyEvent::Delivered { what, host, bytes, from: Some(peer) } => {
            format!("{}: {} relayed from {peer}", on(what, host), human_bytes(*bytes))
        }
        CopyEvent::Note { what, host, message } => format!("{}: {message}", on(what, host)),
        CopyEvent::Summary { copies, workstation_bytes, peer_bytes } => format!(
            "copies: {copies} delivered, {} sent by the workstation, {} relayed between hosts",
            human_bytes(*workstation_bytes),
            human_bytes(*peer_bytes)
        ),
    })
}

fn human_bytes(bytes: u64) -> String {
    indicatif::BinaryBytes(bytes).to_string()
}

/// One line when a resource starts and one when it ends.
pub struct Lines;

impl CopyProgress for Lines {
    fn event(&self, event: CopyEvent) {
        if let Some(line) = copy_line(&event) {
            println!("{line}");
        }
    }
}

impl Reporter for Lines {
    fn event(&self, event: &ApplyEvent) {
        match event {
            ApplyEvent::Started { address, action } => println!("{address}: {}...", verb(*action).0),
            finished => {
                if let Some((ok, line)) = finished_line(finished) {
                    if ok {
                        println!("{line}");
                    } else {
                        eprintln!("{line}");
                    }
                }
            }
        }
    }
}

/// An overall bar and a spinner per running resource; finished resources print above them.
pub struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    running: Mutex<HashMap<String, ProgressBar>>,
    /// One bar for every copy (the cluster image's and the applications'), across hosts: bytes delivered
    /// of those planned, and copies done of those started.
    image: Mutex<ImageBar>,
}

struct ImageBar {
    bar: Option<ProgressBar>,
    planned: usize,
    done: usize,
}

impl Bars {
    /// `total` changes.
    pub fn new(total: usize) -> Self {
        let multi = MultiProgress::new();
        let overall = multi.add(ProgressBar::new(total as u64));
        overall.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} resources")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        Bars {
            multi,
            overall,
            running: Mutex::new(HashMap::new()),
            image: Mutex::new(ImageBar { bar: None, planned: 0, done: 0 }),
        }
    }
}

impl CopyProgress for Bars {
    fn event(&self, event: CopyEvent) {
        let Ok(mut image) = self.image.lock() else { return };
        match event {
            CopyEvent::Planned { bytes, .. } => {
                image.planned += 1;
                let message = format!("{}/{} copies", image.done, image.planned);
                let bar = image.bar.get_or_insert_with(|| {
                    let bar = self.multi.insert_before(&self.overall, ProgressBar::new(0));
                    bar.set_style(
                        ProgressStyle::with_template("copies [{bar:30}] {bytes}/{total_bytes}, {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                    );
                    bar
                });
                bar.set_message(message);
                bar.inc_length(bytes);
            }
            CopyEvent::Delivered { bytes, .. } => {
                image.done += 1;
                let message = format!("{}/{} copies", image.done, image.planned);
                if let Some(bar) = &image.bar {
                    bar.inc(bytes);
                    bar.set_message(message);
                }
            }
            other => {
                if let Some(line) = copy_line(&other) {
                    let _ = self.multi.println(line);
                }
            }
        }
    }
}

impl Reporter for Bars {
    fn event(&self, event: &ApplyEvent) {
        match event {
            ApplyEvent::Started { address, action } => {
                let spinner = self.multi.insert_before(&self.overall, ProgressBar::new_spinner());
                spinner.set_message(format!("{address}: {}", verb(*action).0));
                spinner.enable_steady_tick(std::time::Duration::from_millis(120));
                if let Ok(mut running) = self.running.lock() {
                    running.insert(address.to_string(), spinner);
                }
            }
            ApplyEvent::Finished { address, .. } => {
                if let Some(spinner) = self.running.lock().ok().and_then(|mut r| r.remove(&address.to_string())) {
                    spinner.finish_and_clear();
                    self.multi.remove(&spinner);
                }
                if let Some((_, line)) = finished_line(event) {
                    let _ = self.multi.println(line);
                }
                self.overall.inc(1);
            }
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        if let Some(bar) = self.image.lock().ok().and_then(|mut i| i.bar.take()) {
            bar.finish_and_clear();
        }
        self.overall.finish_and_clear();
    }
}

/// One JSON object per line: `{"type":"apply_start"|"apply_complete"|"apply_errored"|"skipped"|"cancelled", ...}`.
pub struct JsonLines;

impl Reporter for JsonLines {
    fn event(&self, event: &ApplyEvent) {
        let value = match event {
            ApplyEvent::Started { address, action } => {
                serde_json::json!({"type": "apply_start", "address": address.to_string(), "action": action.as_str()})
            }
            ApplyEvent::Finished { address, action, outcome, elapsed } => {
                let (kind, detail) = match outcome {
                    NodeOutcome::Applied => ("apply_complete", None),
                    NodeOutcome::Failed(e) => ("apply_errored", Some(e.clone())),
                    NodeOutcome::Skipped { because } => ("skipped", Some(format!("`{because}` failed"))),
                    NodeOutcome::Cancelled => ("cancelled", None),
                };
                serde_json::json!({"type": kind, "address": address.to_string(), "action": action.as_str(),
                                   "elapsed_seconds": elapsed.as_secs_f64(), "error": detail})
            }
        };
        println!("{value}");
    }
}

impl CopyProgress for JsonLines {
    fn event(&self, event: CopyEvent) {
        let value = match event {
            CopyEvent::Planned { what, host, bytes } => serde_json::json!({
                "type": "image_copy_start", "what": what, "host": host.to_string(), "bytes": bytes,
            }),
            CopyEvent::Delivered { what, host, bytes, from } => serde_json::json!({
                "type": "image_copy_complete", "what": what, "host": host.to_string(), "bytes": bytes,
                "from": if from.is_some() { "peer" } else { "workstation" },
                "peer": from.map(|p| p.to_string()),
            }),
            CopyEvent::Note { what, host, message } => serde_json::json!({
                "type": "image_copy_note", "what": what, "host": host.to_string(), "message": message,
            }),
            CopyEvent::Summary { copies, workstation_bytes, peer_bytes } => serde_json::json!({
                "type": "image_distribution", "copies": copies,
                "workstation_bytes": workstation_bytes, "peer_bytes": peer_bytes,
            }),
        };
        println!("{value}");
    }
}

/// A bar per blob (bytes, rate, time left) for pushes and pulls on a terminal.
pub struct TransferBar {
    bar: Mutex<Option<ProgressBar>>,
}

impl TransferBar {
    /// The bar on a terminal, nothing otherwise.
    pub fn for_stdout() -> Box<dyn sealer_providers::image::TransferProgress> {
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            Box::new(TransferBar { bar: Mutex::new(None) })
        } else {
            Self::quiet()
        }
    }

    /// Nothing shown (output that programs read).
    pub fn quiet() -> Box<dyn sealer_providers::image::TransferProgress> {
        Box::new(sealer_providers::image::Quiet)
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}

impl sealer_providers::image::TransferProgress for TransferBar {
    fn start(&self, blob: &str, total: u64, already: u64) {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(short(blob).to_string());
        bar.set_position(already);
        if let Ok(mut current) = self.bar.lock() {
            *current = Some(bar);
        }
    }

    fn advance(&self, bytes: u64) {
        if let Some(bar) = self.bar.lock().ok().and_then(|b| b.clone()) {
            bar.inc(bytes);
        }
    }

    fn finish(&self, blob: &str, skipped: bool) {
        if let Some(bar) = self.bar.lock().ok().and_then(|mut b| b.take()) {
            bar.finish_and_clear();
        }
        let what = if skipped { "already there" } else { "done" };
        println!("{}: {what}", short(blob));
    }
}
