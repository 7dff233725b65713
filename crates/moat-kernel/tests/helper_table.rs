//! `moat_abi`'s table of helper access per program type, asked of the running kernel again: each
//! helper is called by a minimal program of each type with a non-GPL license, and the kernel's
//! answer ("cannot use helper" / unknown function, "GPL-restricted", or anything else: allowed) is
//! compared with the table. On the kernel release the table was recorded on, every row must agree;
//! on another release the rows that differ are printed (the table's rows, ready to paste) and the
//! test passes. Skips with the reason where `bpf()` is unavailable.

use moat_abi::{HelperAccess, HelperId, HELPER_TABLE_KERNEL, HELPER_TABLE_TYPES};
use moat_kernel::{load_program, KernelError, LoadOptions, ProgType};

/// What the kernel answers for `helper` in a program of `prog_type`.
fn ask(helper: HelperId, prog_type: ProgType) -> Result<HelperAccess, KernelError> {
    // call helper; r0 = 0; exit
    let mut insns = vec![0x85u8, 0, 0, 0];
    insns.extend_from_slice(&helper.as_u32().to_le_bytes());
    insns.extend_from_slice(&[0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]);
    let mut options = LoadOptions::new(prog_type);
    options.license = "Proprietary".into();
    options.log_level = 1;
    options.log_size = 1 << 16;
    match load_program(&insns, &options) {
        Ok(_) => Ok(HelperAccess::Allowed),
        Err(KernelError::Load { log, .. }) if log.contains("GPL-restricted") => {
            Ok(HelperAccess::GplOnly)
        }
        Err(KernelError::Load { log, .. })
            if log.contains("cannot use helper") || log.contains("unknown func") =>
        {
            Ok(HelperAccess::Unavailable)
        }
        // Refused for its arguments or its return: the helper itself passed.
        Err(KernelError::Load { .. }) => Ok(HelperAccess::Allowed),
        Err(e) => Err(e),
    }
}

#[test]
fn the_kernel_gives_the_recorded_helper_access() {
    if let Err(reason) = moat_kernel::available() {
        println!("skipped: {reason}");
        return;
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mut differing = Vec::new();
    for helper in HelperId::ALL {
        let mut recorded = String::new();
        let mut live = String::new();
        for prog_type in HELPER_TABLE_TYPES {
            let access = match ask(*helper, prog_type) {
                Ok(a) => a,
                Err(e) => {
                    println!("skipped: {} in {prog_type:?}: {e}", helper.name());
                    return;
                }
            };
            live.push(access.letter());
            recorded.push(helper.access(prog_type).expect("a column").letter());
        }
        if live != recorded {
            differing.push(format!(
                "    \"{live}\", // {} {} (recorded \"{recorded}\")",
                helper.as_u32(),
                helper.name()
            ));
        }
    }
    println!(
        "{} of {} rows differ from the table recorded on {HELPER_TABLE_KERNEL} (this kernel: {release})",
        differing.len(),
        HelperId::ALL.len()
    );
    for row in &differing {
        println!("{row}");
    }
    if release == HELPER_TABLE_KERNEL {
        assert!(differing.is_empty(), "the table is out of date");
    }
}
