//! Linux backends (being written).
use crate::*;
pub fn create(_pref: Preference, _name: &str) -> Result<Box<dyn Containment>> {
    Err(ContainError::Unsupported("not yet".into()))
}
pub fn probe_backend(_pref: Preference) -> Result<BackendChoice> {
    Err(ContainError::Unsupported("not yet".into()))
}
pub fn clean_stale() -> Vec<String> {
    Vec::new()
}
