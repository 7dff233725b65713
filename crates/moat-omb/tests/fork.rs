//! Two ranks across `fork`: the child attaches after the fork and echoes messages of every
//! protocol (eager, rendezvous) back to the parent. Alone in its test binary, so that no other test
//! thread exists when it forks.

use moat_omb::{Comm, Geometry};

#[test]
fn ranks_in_a_parent_and_its_forked_child_exchange_messages() {
    let path =
        std::path::PathBuf::from("/dev/shm").join(format!("moat-omb-fork-{}", std::process::id()));
    let path = if path.parent().is_some_and(|d| d.is_dir()) {
        path
    } else {
        std::env::temp_dir().join(format!("moat-omb-fork-{}", std::process::id()))
    };
    let _ = std::fs::remove_file(&path);
    Comm::create(&path, &Geometry::default()).unwrap();
    let sizes = [1usize, 64, 8192, 8193, 100_000, 1 << 20];
    // SAFETY: this test binary runs this one test on one thread, so the child is a copy of a
    // single-threaded process; it only attaches, echoes and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = (|| -> Result<(), moat_omb::OmbError> {
            let mut c = Comm::attach(&path, 1)?;
            let mut buf = vec![0u8; 1 << 20];
            for _ in 0..sizes.len() {
                let n = c.recv(0, &mut buf)?;
                c.send(0, &buf[..n])?;
            }
            Ok(())
        })()
        .is_ok();
        // SAFETY: `_exit` ends the child at once, without running the parent's exit handlers.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut c = Comm::attach(&path, 0).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    for (i, &len) in sizes.iter().enumerate() {
        let msg: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
        c.send(1, &msg).unwrap();
        assert_eq!(c.recv(1, &mut buf).unwrap(), len);
        assert!(buf[..len] == msg[..]);
    }
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out-pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    std::fs::remove_file(&path).unwrap();
}
