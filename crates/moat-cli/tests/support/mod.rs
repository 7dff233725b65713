//! What the end-to-end tests that need outside tools share: the workspace's root, and tools
//! installed by the project's own deps scripts when they are missing.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether `tool` is on the `PATH`.
fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Makes sure every one of `tools` is there, running `scripts/<script>` when one is missing;
/// `Err` says why they cannot be.
pub fn ensure_tools(tools: &[&str], script: &str) -> Result<(), String> {
    if tools.iter().all(|t| have(t)) {
        return Ok(());
    }
    let script = workspace().join("scripts").join(script);
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
