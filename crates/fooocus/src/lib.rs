//! guard-fooocus: what the guard knows about Fooocus itself, apart from its console (that is
//! `fooocus-console`). No supervision, no OS containment: facts about installs and versions.
//!
//! * [`install`]: finding a Fooocus install (portable, venv, conda, Fooocus-API, forks) and the
//!   exact argv that starts it, checked against each version's own flag table.
//! * [`options`]: the launch options a user picks and the values Fooocus accepts.
//! * [`stop`]: how each version can be asked to stop a generation (its stop routes), the one
//!   Gradio stop request, and the small loopback HTTP client that sends it.

pub mod install;
pub mod options;
pub mod stop;
