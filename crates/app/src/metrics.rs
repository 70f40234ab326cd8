//! Optional Prometheus text exposition on 127.0.0.1 (off by default): the latest sample's
//! figures and counters of generations by outcome and breaches by limit.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use guard_core::events::{EventKind, GuardEvent};

#[derive(Default, Debug)]
pub struct Metrics {
    /// name -> (help, value); gauges of the latest sample.
    gauges: BTreeMap<&'static str, (&'static str, f64)>,
    generations: BTreeMap<String, u64>,
    breaches: BTreeMap<String, u64>,
    restarts: u64,
    warnings: u64,
}

impl Metrics {
    pub fn set_gauge(&mut self, name: &'static str, help: &'static str, value: f64) {
        self.gauges.insert(name, (help, value));
    }

    pub fn on_event(&mut self, ev: &GuardEvent) {
        match &ev.kind {
            EventKind::GenerationFinished { outcome, .. } => {
                *self.generations.entry(outcome.clone()).or_default() += 1
            }
            EventKind::LimitBreached { limit, .. } => {
                *self.breaches.entry(limit.as_str().to_string()).or_default() += 1
            }
            EventKind::Restarting { .. } => self.restarts += 1,
            EventKind::Warning { .. } => self.warnings += 1,
            _ => {}
        }
    }

    /// The text exposition format, version 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, (help, v)) in &self.gauges {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"
            ));
        }
        out.push_str("# HELP fooocus_guard_generations_total Generations finished, by outcome.\n# TYPE fooocus_guard_generations_total counter\n");
        for (k, v) in &self.generations {
            out.push_str(&format!(
                "fooocus_guard_generations_total{{outcome=\"{k}\"}} {v}\n"
            ));
        }
        out.push_str("# HELP fooocus_guard_breaches_total Limit breaches, by limit.\n# TYPE fooocus_guard_breaches_total counter\n");
        for (k, v) in &self.breaches {
            out.push_str(&format!(
                "fooocus_guard_breaches_total{{limit=\"{k}\"}} {v}\n"
            ));
        }
        out.push_str(&format!(
            "# HELP fooocus_guard_restarts_total Restarts of Fooocus after a failure.\n# TYPE fooocus_guard_restarts_total counter\nfooocus_guard_restarts_total {}\n",
            self.restarts
        ));
        out.push_str(&format!(
            "# HELP fooocus_guard_warnings_total Warnings the guard gave (such as Fooocus kept off the network because its gateway could not start).\n# TYPE fooocus_guard_warnings_total counter\nfooocus_guard_warnings_total {}\n",
            self.warnings
        ));
        out
    }
}

/// The `/metrics` page, which saved settings may turn on, turn off or move to another port
/// while the guard runs.
pub struct Exporter {
    guard: guard_core::Guard,
    /// Fed from the guard's updates from the first start on (a thread for the life of the
    /// process), so the counters survive a new port, as Prometheus expects of counters.
    figures: Option<Arc<Mutex<Metrics>>>,
    server: Option<guard_gateway::PageServer>,
}

impl Exporter {
    /// Off until [`Exporter::serve_on`].
    pub fn new(guard: &guard_core::Guard) -> Exporter {
        Exporter {
            guard: guard.clone(),
            figures: None,
            server: None,
        }
    }

    /// Where the page is served, while it is on.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(|s| s.local_addr())
    }

    /// Serve on 127.0.0.1:`port` (None: stop serving). On an error the page stays where it
    /// was, so a port already taken never turns working metrics off.
    pub fn serve_on(&mut self, port: Option<u16>) -> Result<(), String> {
        let Some(port) = port else {
            // Dropping the server stops it and frees its port.
            self.server = None;
            return Ok(());
        };
        if self.addr().is_some_and(|a| a.port() == port) {
            return Ok(());
        }
        let figures = match &self.figures {
            Some(f) => f.clone(),
            None => {
                let f = Arc::new(Mutex::new(Metrics::default()));
                feed(&self.guard, f.clone())?;
                self.figures = Some(f.clone());
                f
            }
        };
        // The new one is bound before the old one goes: the ports differ here.
        self.server = Some(serve(port, figures)?);
        Ok(())
    }
}

/// Keep `metrics` up to date: counters from the guard's events, gauges from its samples.
fn feed(guard: &guard_core::Guard, metrics: Arc<Mutex<Metrics>>) -> Result<(), String> {
    let rx = guard.subscribe();
    std::thread::Builder::new()
        .name("fooocus-guard-metrics-feed".into())
        .spawn(move || {
            for u in rx {
                let mut m = metrics.lock().unwrap();
                match u {
                    guard_core::Update::Event(e) => m.on_event(&e),
                    guard_core::Update::Status(st) => {
                        // For alerting on a headless server: a breach will cost a model reload
                        // while this is 0 (the status and `doctor` say why).
                        m.set_gauge(
                            "fooocus_guard_graceful_stop_available",
                            "1 when a generation can be stopped without restarting Fooocus.",
                            f64::from(u8::from(st.graceful_stop.available)),
                        );
                    }
                    guard_core::Update::Sample(s) => {
                        m.set_gauge(
                            "fooocus_guard_system_cpu_percent",
                            "CPU use of the whole machine, percent.",
                            s.system.cpu_percent,
                        );
                        m.set_gauge(
                            "fooocus_guard_system_ram_used_bytes",
                            "RAM in use on the machine.",
                            s.system.ram_used_bytes as f64,
                        );
                        m.set_gauge(
                            "fooocus_guard_system_ram_total_bytes",
                            "RAM of the machine.",
                            s.system.ram_total_bytes as f64,
                        );
                        let t = s.tree.clone().unwrap_or_default();
                        m.set_gauge(
                            "fooocus_guard_tree_cpu_percent",
                            "CPU use of the Fooocus tree, percent of one core.",
                            t.cpu_percent,
                        );
                        m.set_gauge(
                            "fooocus_guard_tree_ram_bytes",
                            "RAM of the Fooocus tree.",
                            t.ram_bytes as f64,
                        );
                        m.set_gauge(
                            "fooocus_guard_tree_swap_bytes",
                            "Swap of the Fooocus tree.",
                            t.swap_bytes as f64,
                        );
                        m.set_gauge(
                            "fooocus_guard_tree_processes",
                            "Processes in the Fooocus tree.",
                            t.processes as f64,
                        );
                        if let Some(v) = t.vram_bytes.or_else(|| s.device_vram_bytes()) {
                            m.set_gauge(
                                "fooocus_guard_vram_bytes",
                                "VRAM of the Fooocus tree (or the GPUs).",
                                v as f64,
                            );
                        }
                    }
                    _ => {}
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Serve `/metrics` on 127.0.0.1:`port` (the gateway's HTTP stack, on a thread of its own)
/// until the server is dropped. Loopback only, whatever the settings.
pub fn serve(port: u16, metrics: Arc<Mutex<Metrics>>) -> Result<guard_gateway::PageServer, String> {
    guard_gateway::PageServer::start(
        SocketAddr::from(([127, 0, 0, 1], port)),
        "text/plain; version=0.0.4",
        move |path| (path == "/metrics").then(|| metrics.lock().unwrap().render()),
    )
    .map_err(|e| {
        format!(
            "metrics: cannot listen on 127.0.0.1:{port} ({e}): pick another port in the settings"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use guard_core::events::LimitKind;

    #[test]
    fn counts_and_serves_on_loopback() {
        let m = Arc::new(Mutex::new(Metrics::default()));
        {
            let mut g = m.lock().unwrap();
            g.set_gauge(
                "fooocus_guard_tree_ram_bytes",
                "RAM of the Fooocus tree.",
                1024.0,
            );
            g.on_event(&GuardEvent::now(EventKind::LimitBreached {
                limit: LimitKind::Timeout,
                configured: 1.0,
                observed: 2.0,
                action: guard_core::events::BreachAction::Kill,
                generation_id: None,
                source: None,
                phase: None,
            }));
        }
        let server = serve(0, m).unwrap();
        let addr = server.local_addr();
        assert!(addr.ip().is_loopback());
        let (status, body) =
            guard_fooocus::stop::http(&format!("http://{addr}"), "GET", "/metrics", None, &[])
                .unwrap();
        let body = String::from_utf8(body).unwrap();
        assert_eq!(status, 200);
        assert!(body.contains("fooocus_guard_tree_ram_bytes 1024"), "{body}");
        assert!(
            body.contains("fooocus_guard_breaches_total{limit=\"timeout\"} 1"),
            "{body}"
        );
    }
}
