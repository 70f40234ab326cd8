//! Incremental parser of the Fooocus console: bytes in, events out. Pure logic, no OS.
