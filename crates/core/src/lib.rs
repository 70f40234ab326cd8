//! The Fooocus supervisor: config, installs, launch, restart policy, generations, limits, events.
