//! Every sentence the supervisor writes for the user, in one place: the why-card of a stopped
//! generation ([`why`]), the desktop notification ([`notice`]), and what the machine says of a
//! run in the console and its events ([`run`]). What the user reads is built from the same
//! events the log holds, so the words and the record cannot disagree.

pub mod notice;
pub(crate) mod run;
pub mod why;
