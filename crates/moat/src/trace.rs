//! The host-visible log that `bpf_trace_printk` writes to (the kernel's `trace_pipe`).

use std::sync::{Arc, Mutex};

/// Lines printed by programs, shared by a runtime and every program it loaded.
#[derive(Debug, Clone, Default)]
pub struct TraceLog {
    lines: Arc<Mutex<Vec<String>>>,
}

impl TraceLog {
    /// Appends a line.
    pub(crate) fn push(&self, line: String) {
        if let Ok(mut lines) = self.lines.lock() {
            lines.push(line);
        }
    }

    /// Takes every line logged so far.
    pub fn drain(&self) -> Vec<String> {
        self.lines
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }
}
