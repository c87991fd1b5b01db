//! Where tests find the repository and the binaries the test run built, and the
//! README's example request (so tests submit exactly what a reader would).

use std::path::{Path, PathBuf};

/// The repository's root folder (every crate lives two levels below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the crate lives two levels below the workspace root")
        .to_path_buf()
}

/// Where the binaries were built: the target folder the running test comes from
/// (`target/<profile>/deps/<test>` → `target/<profile>`).
pub fn bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| workspace_root().join("target/debug"))
}

/// [`bin_dir`], after checking that the stack's binaries are there (a test that starts
/// the stack needs them built first).
pub fn stack_bin_dir() -> PathBuf {
    let bin_dir = bin_dir();
    for binary in ["orchestrator-api", "orchestrator-worker", "mock-services"] {
        assert!(
            bin_dir.join(binary).is_file(),
            "{} is missing: build the binaries first (cargo build --workspace --bins)",
            bin_dir.join(binary).display()
        );
    }
    bin_dir
}

/// The body of the first `curl ... -d '...'` of the README's quick start.
pub fn readme_example() -> serde_json::Value {
    let readme =
        std::fs::read_to_string(workspace_root().join("README.md")).expect("reading README.md");
    let quick_start = readme
        .split_once("## Quick start")
        .expect("README.md has a Quick start section")
        .1;
    let body = quick_start
        .split_once("-d '")
        .and_then(|(_, rest)| rest.split_once('\''))
        .expect("the quick start submits a body with -d '...'")
        .0;
    serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("the quick start's body is not JSON ({e}):\n{body}"))
}
