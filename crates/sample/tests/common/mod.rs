//! Builds the fake libnvidia-ml once per test binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn fake_nvml(omit_processes: bool) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fake-nvml/fake_nvml.c");
    let dir = std::env::temp_dir().join(format!(
        "fooocus-guard-fake-nvml-{}-{}",
        std::process::id(),
        omit_processes
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let lib = dir.join("libnvidia-ml.so.1");
    if !lib.exists() {
        let mut cmd = Command::new("gcc");
        cmd.args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&lib)
            .arg(&src);
        if omit_processes {
            cmd.arg("-DOMIT_PROCESSES");
        }
        let st = cmd.status().expect("gcc is installed");
        assert!(st.success(), "building the fake NVML failed");
    }
    lib
}
