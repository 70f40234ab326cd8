//! Windows backend: a Job Object per Fooocus run (being written).
use crate::*;
pub fn create(_name: &str) -> Result<Box<dyn Containment>> {
    Err(ContainError::Unsupported("not yet".into()))
}
pub fn probe_backend() -> Result<BackendChoice> {
    Err(ContainError::Unsupported("not yet".into()))
}
