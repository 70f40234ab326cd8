//! What the guard answers on its socket (src/ipc.rs): the dashboard's commands and the calls the
//! app's own processes make.

use std::sync::atomic::Ordering;

use crossbeam_channel::Sender;
use fooocus_guard::command::{self, Answer, Backend, Control};
use fooocus_guard::ipc;
use serde_json::Value;

use super::action::Action;
use super::dashboard_process::Running;

/// The dashboard's calls: its commands (docs/ipc.md, src/command_list.rs), answered by the
/// `Backend`, and the two the dashboard's and a second guard's processes make themselves.
pub struct Commands {
    pub backend: Backend,
    pub actions: Sender<Action>,
    pub running: Running,
}

impl ipc::Handler for Commands {
    fn call(&self, cmd: &str, args: Value) -> Result<Value, String> {
        let Some(control) = Control::from_name(cmd) else {
            return self.backend.answer(command::Command::from_call(cmd, args)?);
        };
        match control {
            Control::DashboardClosing => {
                if let Some(r) = self.running.lock().unwrap().take() {
                    r.store(false, Ordering::Relaxed);
                }
            }
            Control::OpenDashboard => {
                let _ = self.actions.send(Action::OpenDashboard { why: false });
            }
        }
        Ok(Value::Null)
    }
}
