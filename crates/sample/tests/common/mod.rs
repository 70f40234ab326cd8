//! Builds the fake libnvidia-ml once per test binary.
#![allow(dead_code)]

use std::path::PathBuf;
#[cfg(unix)]
use std::{path::Path, process::Command};

/// Windows (under Wine): the test process cannot run the Linux compiler, so
/// scripts/windows/test.sh builds nvml.dll with mingw and names its folder in FAKE_NVML_DLL_DIR.
#[cfg(windows)]
pub fn fake_nvml(omit_processes: bool) -> PathBuf {
    let dir = std::env::var_os("FAKE_NVML_DLL_DIR")
        .expect("FAKE_NVML_DLL_DIR is not set: run these tests through scripts/windows/test.sh");
    let sub = if omit_processes { "omit" } else { "full" };
    let dll = PathBuf::from(dir).join(sub).join("nvml.dll");
    assert!(dll.exists(), "{} is missing", dll.display());
    dll
}

#[cfg(unix)]
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
