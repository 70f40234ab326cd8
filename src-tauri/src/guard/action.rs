//! What the guard's other threads (the tray, the socket's calls, a notification's click) ask of
//! its main thread, which owns the dashboard's process.

/// What the tray and a second launch ask of the main thread.
pub enum Action {
    /// `why`: at the "why it stopped" card (a limit's notification was clicked).
    OpenDashboard {
        why: bool,
    },
    Quit,
}
