//! The kernel verifier's limits on calls, stack frames, tail calls, loops and analysis.

/// Most call frames at once, the main function's included (the kernel's `MAX_CALL_FRAMES`).
pub const MAX_CALL_FRAMES: usize = 8;
/// Bytes of stack of one frame (the kernel's `MAX_BPF_STACK`).
pub const STACK_FRAME_SIZE: usize = 512;
/// Most tail calls in one run (the kernel's `MAX_TAIL_CALL_CNT`).
pub const MAX_TAIL_CALLS: u32 = 33;
/// Most iterations one `bpf_loop` call runs (the kernel's `BPF_MAX_LOOPS`).
pub const MAX_LOOPS: u64 = 1 << 23;
/// Instructions the verifier processes, over all paths, before it gives up (the kernel's
/// `BPF_COMPLEXITY_LIMIT_INSNS`).
pub const COMPLEXITY_LIMIT_INSNS: u64 = 1_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(MAX_CALL_FRAMES, 8);
        assert_eq!(STACK_FRAME_SIZE, 512);
        assert_eq!(MAX_TAIL_CALLS, 33);
        assert_eq!(MAX_LOOPS, 8_388_608);
        assert_eq!(COMPLEXITY_LIMIT_INSNS, 1_000_000);
    }
}
