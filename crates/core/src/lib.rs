//! guard-core: the Fooocus supervisor and everything it needs, with no UI toolkit. What the
//! guard knows about Fooocus's installs and versions is `guard-fooocus`; installing it is
//! `guard-installer`.
//!
//! * [`config`]: the TOML settings, validated, written atomically, with a last-good fallback.
//! * [`generation`]: one record per Fooocus task, from the console (pure).
//! * [`policy`]: which limit is breached and when the next can be (pure).
//! * [`restart`]: backoff and giving up (pure).
//! * [`events`]: structured events (JSON lines, tracing).
//! * [`supervisor`]: the process, its container, its console, the timers and the escalation.

pub mod commit;
pub mod config;
pub mod console;
pub mod events;
pub mod generation;
pub mod policy;
pub mod restart;
pub mod sampling;
pub mod store;
pub mod supervisor;
pub mod units;
pub mod words;

pub use supervisor::{Guard, GuardOptions, Status, Target, Update};
