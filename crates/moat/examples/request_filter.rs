//! Embedding moat: a request filter whose policy is an eBPF program.
//!
//! The host application below handles (simulated) HTTP requests. Whether a request is allowed is
//! decided by `examples/c/request_filter.bpf.c`, compiled with clang into an ELF object: moat opens
//! the object, verifies the program against the request structure the host passes, and runs it for
//! each request. The host fills the policy's `admins` map and reads its `requests` counters back.
//!
//! Run it with `cargo run -p moat --example request_filter`.

use moat::{ObjectOptions, ProgType, Runtime, BPF_ANY};

/// The request as the policy program sees it (`struct request` in the C source).
struct Request<'a> {
    client_ip: [u8; 4],
    method: u32,
    path: &'a str,
}

impl Request<'_> {
    /// The C layout: `__u32 client_ip, method, path_len; char path[64];`.
    fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(76);
        b.extend_from_slice(&self.client_ip);
        b.extend_from_slice(&self.method.to_ne_bytes());
        b.extend_from_slice(&(self.path.len().min(64) as u32).to_ne_bytes());
        let mut path = [0u8; 64];
        let n = self.path.len().min(64);
        path[..n].copy_from_slice(&self.path.as_bytes()[..n]);
        b.extend_from_slice(&path);
        b
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let object = include_bytes!("../../../examples/c/request_filter.o");
    let mut rt = Runtime::new();
    // The policy's context is the 76-byte request: verify every access against that size.
    rt.set_buffer_size(76);
    let obj = rt.load_object(
        object,
        ObjectOptions {
            prog_type: Some(ProgType::Buffer),
        },
    )?;
    let policy = obj.program("filter")?;
    let stats = policy.verified().map(|v| v.stats());
    println!("policy verified: {stats:?}");

    // 10.0.0.1 may use /admin.
    let admins = obj.map("admins")?;
    admins.update(&[10, 0, 0, 1], &[1], BPF_ANY)?;

    let requests = [
        Request {
            client_ip: [10, 0, 0, 1],
            method: 1,
            path: "/admin/users",
        },
        Request {
            client_ip: [10, 0, 0, 2],
            method: 1,
            path: "/index.html",
        },
        Request {
            client_ip: [10, 0, 0, 2],
            method: 2,
            path: "/admin/delete",
        },
        Request {
            client_ip: [10, 0, 0, 2],
            method: 1,
            path: "/about",
        },
        Request {
            client_ip: [10, 0, 0, 2],
            method: 1,
            path: "/contact",
        },
    ];
    for r in &requests {
        let mut ctx = r.to_bytes();
        let verdict = policy.run(&mut ctx)?;
        let ip = r.client_ip.map(|b| b.to_string()).join(".");
        println!(
            "{ip:>10} {:<14} -> {}",
            r.path,
            if verdict == 1 { "allow" } else { "deny" }
        );
    }
    let counters = obj.map("requests")?;
    for key in counters.keys() {
        let count = u64::from_ne_bytes(
            counters
                .lookup(&key)?
                .try_into()
                .map_err(|_| "value size")?,
        );
        println!(
            "client {} made {count} counted requests",
            key.iter()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join(".")
        );
    }
    Ok(())
}
