//! A veth pair between two network namespaces made for a run, so that TCP between two ranks goes
//! through a real network stack (interfaces of their own, neighbour resolution, the veth driver).
//! The namespaces get 10.213.18.1/30 and 10.213.18.2/30 on their veth ends; nothing else is
//! addressed, and both are deleted on drop. Needs root (`CAP_NET_ADMIN`) and `ip` (iproute2).

use crate::error::OmbError;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

/// Two namespaces joined by a veth pair, deleted on drop.
#[derive(Debug)]
pub struct VethPair {
    names: [String; 2],
    /// The host-side name of the first end (left behind if moving it into its namespace failed).
    veth: String,
}

/// The addresses of the two ends.
pub const ADDRS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(10, 213, 18, 1)),
    IpAddr::V4(Ipv4Addr::new(10, 213, 18, 2)),
];

fn ip(args: &[&str]) -> Result<(), OmbError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| OmbError::Unavailable {
            transport: "tcp-veth".into(),
            reason: format!("cannot run ip: {e}"),
        })?;
    if !out.status.success() {
        return Err(OmbError::Unavailable {
            transport: "tcp-veth".into(),
            reason: format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

impl VethPair {
    /// Creates the namespaces `moat-omb-<pid>-a`/`-b` and the pair between them.
    pub fn create() -> Result<VethPair, OmbError> {
        let id = std::process::id();
        let (va, vb) = (
            format!("mo{}a", id % 1_000_000),
            format!("mo{}b", id % 1_000_000),
        );
        let pair = VethPair {
            names: [format!("moat-omb-{id}-a"), format!("moat-omb-{id}-b")],
            veth: va.clone(),
        };
        let (a, b) = (&pair.names[0], &pair.names[1]);
        ip(&["netns", "add", a])?;
        ip(&["netns", "add", b])?;
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])?;
        ip(&["link", "set", &va, "netns", a])?;
        ip(&["link", "set", &vb, "netns", b])?;
        for (ns, dev, addr) in [(a, &va, "10.213.18.1/30"), (b, &vb, "10.213.18.2/30")] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(pair)
    }

    /// The namespace of rank `r` (0 or 1).
    pub fn namespace(&self, r: usize) -> &str {
        &self.names[r.min(1)]
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it, and with it the pair; an end still in
        // the host's namespace (a failed move) is deleted by name.
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .stderr(std::process::Stdio::null())
            .output();
        for ns in &self.names {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
