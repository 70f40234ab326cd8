//! What the user sees: the events (log, history, notices), the guard's console lines, the
//! status the tray and the dashboard render.

use super::*;

impl Loop {
    pub(super) fn emit(&mut self, mut kind: EventKind) {
        if let EventKind::LimitBreached { .. } = kind {
            self.last_breach = Some(kind.clone());
        }
        crate::words::why::summarize(&mut kind, self.last_breach.as_ref(), &self.cfg);
        let ev = crate::events::GuardEvent::now(kind);
        events::trace(&ev);
        let kept = self.store.as_ref().is_none_or(|s| s.record_event(&ev));
        if let EventKind::LimitBreached { .. } = ev.kind {
            self.shared.status.lock().unwrap().unseen_breach = true;
        }
        self.shared.publish(Update::Event(ev));
        if !kept {
            self.history_overflowed();
        }
    }

    /// The disk or the database is too slow for the history queue: records were dropped.
    pub(super) fn history_overflowed(&mut self) {
        if std::mem::replace(&mut self.history_warned, true) {
            return;
        }
        let msg = "the history database is not keeping up (held by another program, or a slow disk): some history records are dropped; supervision goes on".to_string();
        self.guard_line(&msg);
        self.emit(EventKind::Warning { message: msg });
    }

    pub(super) fn guard_line(&mut self, text: &str) {
        let line = self
            .shared
            .console
            .lock()
            .unwrap()
            .push(Stream::Guard, text);
        self.pending_console.push(line);
        eprintln!("fooocus-guard: {text}");
    }

    pub(super) fn record_finished(&mut self, g: Generation) {
        self.emit(EventKind::GenerationFinished {
            generation_id: g.id,
            outcome: g.outcome.as_str().into(),
            seconds: g.duration_s().unwrap_or(0.0),
            closed_by: g.closed_by.map(|c| c.as_str()).unwrap_or("").into(),
            images_done: g.images_done,
            images_total: g.images_total,
            peak_ram_bytes: g.peaks.ram_bytes,
            peak_vram_bytes: g.peaks.vram_bytes,
            peak_cpu_percent: g.peaks.cpu_percent,
        });
        if !self.store.as_ref().is_none_or(|s| s.save_generation(&g)) {
            self.history_overflowed();
        }
    }

    pub(super) fn flush_console(&mut self, force: bool) {
        if self.pending_console.is_empty() {
            return;
        }
        let now = Instant::now();
        if force || now.duration_since(self.last_console_flush) >= CONSOLE_BATCH {
            let lines = std::mem::take(&mut self.pending_console);
            self.last_console_flush = now;
            self.shared.publish(Update::Console(lines));
        }
    }

    pub(super) fn publish_status(&mut self) {
        let now = Instant::now();
        let mut st = self.shared.status.lock().unwrap();
        // The one place the state is derived: the tray and the dashboard render it as it is.
        st.state = self.machine.state(
            self.target.is_some(),
            matches!(self.tracker.phase, Phase::Ready { .. }),
            self.tracker.current().is_some(),
        );
        st.restarts = self.machine.restarts;
        let run = self.machine.run().map(|r| &r.io);
        st.pid = run.map(|r| r.pid);
        if run.is_none() {
            // Asleep, the gateway kept the address: opening it wakes Fooocus.
            st.url = self.parked.as_ref().and_then(|p| p.browse.clone());
        }
        st.graceful_stop = match run {
            Some(r) => match &r.route {
                StopRoute::Unavailable { why } => GracefulStop {
                    available: false,
                    why: why.clone(),
                },
                _ => GracefulStop {
                    available: true,
                    why: "Fooocus can be asked to stop a generation".into(),
                },
            },
            _ => GracefulStop {
                available: false,
                why: "Fooocus is not running".into(),
            },
        };
        st.actions = Actions::for_state(st.state, st.url.is_some());
        st.actions.sleep = st.state == crate::supervisor::FooocusState::Ready
            && run.is_some_and(|r| r.gateway.is_some());
        st.sleep = self.sleep.clone();
        if st.sleep_spans.len() != self.sleep_spans.len()
            || st.sleep_spans.last() != self.sleep_spans.back()
        {
            st.sleep_spans = self.sleep_spans.iter().copied().collect();
        }
        st.download = (st.state == crate::supervisor::FooocusState::Starting)
            .then(|| self.tracker.download.clone())
            .flatten();
        st.generation = self.tracker.current().map(|g| GenerationProgress {
            id: g.id,
            started_ms: g.started_ms,
            image_index: g.image_index,
            image_total: g.images_total,
            step: g.last_step,
            step_total: g.steps_total,
            elapsed_s: g.elapsed(now).as_secs_f64(),
            timeout_s: self.limits.timeout.map(|d| d.as_secs_f64()),
            phase: g.phase,
            timeout_from_ms: g.started_ms + g.model_load_left_out().as_millis() as i64,
            loads_left_out: g.loads_left_out(),
        });
        // Elapsed time alone is no reason to publish: the UI counts it up itself.
        let mut key = st.clone();
        if let Some(g) = key.generation.as_mut() {
            g.elapsed_s = 0.0;
        }
        let changed = self.last_status.as_ref() != Some(&key);
        let snapshot = st.clone();
        drop(st);
        if changed {
            self.last_status = Some(key);
            self.shared.publish(Update::Status(Box::new(snapshot)));
        }
    }
}
