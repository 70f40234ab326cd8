//! A transparent loopback gateway in front of Fooocus that makes a graceful Stop possible.
