//! The simulated memory system: local DRAM at the root, CXL devices behind switches as a tree,
//! each link with its latency and bandwidth (the information CXLMemSim's topology string carries).
//!
//! One item per line, `#` starts a comment:
//!
//! ```text
//! # A two-level switch with two expanders, and one expander attached directly.
//! switch sw0   parent=root latency=70ns  bandwidth=64GB/s
//! switch sw1   parent=sw0  latency=70ns  bandwidth=32GB/s
//! device mem0  parent=sw1  latency=100ns bandwidth=16GB/s
//! device mem1  parent=sw1  latency=100ns bandwidth=16GB/s
//! device mem2  parent=root latency=100ns bandwidth=32GB/s
//! ```
//!
//! `root` is the CPU's memory controller (local DRAM, tier 0). Each `switch` or `device` names its
//! parent and the link *to* it: the latency that link adds to a load, and the link's bandwidth.
//! Devices are the CXL tiers, numbered from 1 in the order they appear: a placement policy's tier
//! `k` is the `k`-th device. A load from a device pays every link on its path to the root.

use std::time::Duration;
use thiserror::Error;

/// What is wrong with a topology file, and where.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("topology line {line}: {message}")]
pub struct TopologyError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// A switch or a device.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Its name.
    pub name: String,
    /// Whether it is a memory device (a CXL tier) rather than a switch.
    pub device: bool,
    /// Index of the parent node; `None` for the root.
    pub parent: Option<usize>,
    /// Latency the link to the parent adds to a load.
    pub latency: Duration,
    /// The link's bandwidth, bytes per second.
    pub bandwidth: f64,
}

/// A parsed topology.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    nodes: Vec<Node>,
    devices: Vec<usize>,
}

/// The simplest useful topology: one expander on the root port, `latency` away.
pub fn direct(latency: Duration, bandwidth: f64) -> Topology {
    Topology {
        nodes: vec![Node {
            name: "cxl0".into(),
            device: true,
            parent: None,
            latency,
            bandwidth,
        }],
        devices: vec![0],
    }
}

fn parse_duration(v: &str) -> Option<Duration> {
    let (num, unit) = v
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| v.split_at(i))?;
    let n: f64 = num
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    let ns = match unit {
        "ns" => n,
        "us" | "µs" => n * 1e3,
        "ms" => n * 1e6,
        _ => return None,
    };
    Some(Duration::from_nanos(ns.round() as u64))
}

fn parse_bandwidth(v: &str) -> Option<f64> {
    let (num, unit) = v
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| v.split_at(i))?;
    let n: f64 = num
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n > 0.0)?;
    let scale = match unit {
        "GB/s" => 1e9,
        "MB/s" => 1e6,
        "GiB/s" => (1u64 << 30) as f64,
        "MiB/s" => (1u64 << 20) as f64,
        _ => return None,
    };
    Some(n * scale)
}

impl Topology {
    /// Parses the format in the module documentation.
    pub fn parse(text: &str) -> Result<Topology, TopologyError> {
        let mut nodes: Vec<Node> = Vec::new();
        let mut devices = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |message: String| TopologyError { line, message };
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let mut words = content.split_whitespace();
            let kind = words.next().unwrap_or("");
            let device = match kind {
                "device" => true,
                "switch" => false,
                other => return Err(err(format!("`{other}`: expected `switch` or `device`"))),
            };
            let name = words
                .next()
                .ok_or_else(|| err(format!("`{kind}` needs a name")))?
                .to_string();
            if name == "root" || nodes.iter().any(|n| n.name == name) {
                return Err(err(format!("`{name}` is already defined")));
            }
            let (mut parent, mut latency, mut bandwidth) = (None, None, None);
            for w in words {
                let (key, value) = w
                    .split_once('=')
                    .ok_or_else(|| err(format!("`{w}`: expected KEY=VALUE")))?;
                match key {
                    "parent" => {
                        parent = Some(if value == "root" {
                            None
                        } else {
                            let p =
                                nodes.iter().position(|n| n.name == value).ok_or_else(|| {
                                    err(format!("parent `{value}` is not defined above"))
                                })?;
                            if nodes[p].device {
                                return Err(err(format!(
                                    "parent `{value}` is a device; only switches have children"
                                )));
                            }
                            Some(p)
                        })
                    }
                    "latency" => {
                        latency = Some(parse_duration(value).ok_or_else(|| {
                            err(format!("latency `{value}`: expected e.g. 100ns, 1.5us"))
                        })?)
                    }
                    "bandwidth" => {
                        bandwidth = Some(parse_bandwidth(value).ok_or_else(|| {
                            err(format!(
                                "bandwidth `{value}`: expected e.g. 32GB/s, 800MB/s"
                            ))
                        })?)
                    }
                    other => return Err(err(format!("unknown key `{other}`"))),
                }
            }
            let missing = |what: &str| err(format!("`{name}` needs {what}="));
            nodes.push(Node {
                parent: parent.ok_or_else(|| missing("parent"))?,
                latency: latency.ok_or_else(|| missing("latency"))?,
                bandwidth: bandwidth.ok_or_else(|| missing("bandwidth"))?,
                name,
                device,
            });
            if device {
                devices.push(nodes.len() - 1);
            }
        }
        if devices.is_empty() {
            return Err(TopologyError {
                line: text.lines().count().max(1),
                message: "no `device`: a topology needs at least one CXL memory device".into(),
            });
        }
        Ok(Topology { nodes, devices })
    }

    /// The nodes, in file order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Number of CXL tiers (devices).
    pub fn tiers(&self) -> usize {
        self.devices.len()
    }

    /// The device of tier `tier` (1-based), if any.
    pub fn device(&self, tier: usize) -> Option<&Node> {
        self.devices
            .get(tier.checked_sub(1)?)
            .map(|&i| &self.nodes[i])
    }

    /// The links from tier `tier`'s device up to the root (node indices, device first).
    pub fn path(&self, tier: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut at = tier
            .checked_sub(1)
            .and_then(|t| self.devices.get(t))
            .copied();
        while let Some(i) = at {
            out.push(i);
            at = self.nodes[i].parent;
        }
        out
    }

    /// What a load from tier `tier` costs beyond local DRAM: every link's latency on its path.
    pub fn extra_latency(&self, tier: usize) -> Duration {
        self.path(tier).iter().map(|&i| self.nodes[i].latency).sum()
    }

    /// A one-line description of each tier: name, added latency, narrowest bandwidth on its path.
    pub fn describe(&self) -> Vec<String> {
        (1..=self.tiers())
            .map(|t| {
                let narrowest = self
                    .path(t)
                    .iter()
                    .map(|&i| self.nodes[i].bandwidth)
                    .fold(f64::INFINITY, f64::min);
                format!(
                    "tier {t}: {} (+{} ns, {:.1} GB/s through {} link{})",
                    self.device(t).map_or("?", |d| d.name.as_str()),
                    self.extra_latency(t).as_nanos(),
                    narrowest / 1e9,
                    self.path(t).len(),
                    if self.path(t).len() == 1 { "" } else { "s" }
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_LEVEL: &str = "
# A two-level switch with two expanders, and one expander attached directly.
switch sw0   parent=root latency=70ns  bandwidth=64GB/s
switch sw1   parent=sw0  latency=70ns  bandwidth=32GB/s
device mem0  parent=sw1  latency=100ns bandwidth=16GB/s
device mem1  parent=sw1  latency=100ns bandwidth=16GB/s
device mem2  parent=root latency=100ns bandwidth=32GB/s   # direct
";

    #[test]
    fn paths_and_latencies_follow_the_tree() {
        let t = Topology::parse(TWO_LEVEL).expect("parses");
        assert_eq!(t.tiers(), 3);
        assert_eq!(t.extra_latency(1), Duration::from_nanos(240));
        assert_eq!(t.extra_latency(2), Duration::from_nanos(240));
        assert_eq!(t.extra_latency(3), Duration::from_nanos(100));
        assert_eq!(t.path(1), vec![2, 1, 0]);
        assert_eq!(t.path(0), Vec::<usize>::new(), "tier 0 is local");
        assert_eq!(t.device(2).map(|d| d.name.as_str()), Some("mem1"));
        assert!(t.describe()[0].contains("+240 ns, 16.0 GB/s through 3 links"));
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let cases = [
            ("device a parent=root latency=1ns", 1, "needs bandwidth="),
            ("switch s parent=root latency=1ns bandwidth=1GB/s\nnode x", 2, "`node`"),
            ("device a parent=nowhere latency=1ns bandwidth=1GB/s", 1, "not defined above"),
            ("device a parent=root latency=fast bandwidth=1GB/s", 1, "latency `fast`"),
            ("device a parent=root latency=1ns bandwidth=1GB", 1, "bandwidth `1GB`"),
            ("device a parent=root latency=1ns bandwidth=1GB/s\ndevice b parent=a latency=1ns bandwidth=1GB/s", 2, "is a device"),
            ("device a parent=root latency=1ns bandwidth=1GB/s\ndevice a parent=root latency=1ns bandwidth=1GB/s", 2, "already defined"),
            ("switch s parent=root latency=1ns bandwidth=1GB/s", 1, "no `device`"),
            ("device a parent=root latency=1ns bandwidth=1GB/s colour=red", 1, "unknown key `colour`"),
        ];
        for (text, line, needle) in cases {
            let e = Topology::parse(text).expect_err(text);
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.to_string().contains(needle), "{text}: {e}");
        }
    }
}
