//! TCP as a benchmark transport: a full mesh of connections with `TCP_NODELAY`, each message a
//! 4-byte little-endian length and the bytes. Rank `r` listens on `addrs[r]`; it connects to the
//! ranks below it and accepts the ranks above it (each sends its rank first).

use crate::error::OmbError;
use crate::suite::Transport;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// One rank's connections.
#[derive(Debug)]
pub struct Tcp {
    rank: usize,
    peers: Vec<Option<TcpStream>>,
}

/// How long a rank tries to reach the others.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

impl Tcp {
    /// Connects rank `rank` to every other rank of `addrs`.
    pub fn connect(rank: usize, addrs: &[SocketAddr]) -> Result<Tcp, OmbError> {
        let n = addrs.len();
        if rank >= n {
            return Err(OmbError::NoSuchRank { rank, size: n });
        }
        let listener = TcpListener::bind(addrs[rank])
            .map_err(|e| OmbError::io(format!("bind {}", addrs[rank]), e))?;
        let mut peers: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
        for (r, addr) in addrs.iter().enumerate().take(rank) {
            let t = Instant::now();
            let mut s = loop {
                match TcpStream::connect(addr) {
                    Ok(s) => break s,
                    Err(e) if t.elapsed() > CONNECT_TIMEOUT => {
                        return Err(OmbError::io(format!("connect {addr}"), e))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            };
            s.write_all(&(rank as u32).to_le_bytes())
                .map_err(|e| OmbError::io("handshake", e))?;
            peers[r] = Some(s);
        }
        for _ in rank + 1..n {
            let (mut s, _) = listener.accept().map_err(|e| OmbError::io("accept", e))?;
            let mut b = [0u8; 4];
            s.read_exact(&mut b)
                .map_err(|e| OmbError::io("handshake", e))?;
            let r = u32::from_le_bytes(b) as usize;
            if r <= rank || r >= n || peers[r].is_some() {
                return Err(OmbError::InvalidOptions(format!(
                    "unexpected peer rank {r}"
                )));
            }
            peers[r] = Some(s);
        }
        for s in peers.iter().flatten() {
            s.set_nodelay(true)
                .map_err(|e| OmbError::io("TCP_NODELAY", e))?;
        }
        Ok(Tcp { rank, peers })
    }

    fn stream(&mut self, r: usize) -> Result<&mut TcpStream, OmbError> {
        let n = self.peers.len();
        self.peers
            .get_mut(r)
            .and_then(Option::as_mut)
            .ok_or(OmbError::NoSuchRank { rank: r, size: n })
    }
}

fn write_msg(s: &mut TcpStream, data: &[u8]) -> Result<(), OmbError> {
    let len = u32::try_from(data.len()).map_err(|_| OmbError::TooLarge {
        len: data.len(),
        max: u32::MAX as usize,
    })?;
    if data.len() <= 4096 {
        // One segment for small messages.
        let mut b = Vec::with_capacity(4 + data.len());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(data);
        return s.write_all(&b).map_err(|e| OmbError::io("send", e));
    }
    s.write_all(&len.to_le_bytes())
        .and_then(|()| s.write_all(data))
        .map_err(|e| OmbError::io("send", e))
}

fn read_msg(s: &mut TcpStream, src: usize, buf: &mut [u8]) -> Result<usize, OmbError> {
    let mut b = [0u8; 4];
    s.read_exact(&mut b).map_err(|e| OmbError::io("recv", e))?;
    let len = u32::from_le_bytes(b) as usize;
    if len > buf.len() {
        let mut rest = vec![0u8; len];
        s.read_exact(&mut rest)
            .map_err(|e| OmbError::io("recv", e))?;
        return Err(OmbError::Truncated {
            src,
            len,
            cap: buf.len(),
        });
    }
    s.read_exact(&mut buf[..len])
        .map_err(|e| OmbError::io("recv", e))?;
    Ok(len)
}

impl Transport for Tcp {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.peers.len()
    }
    fn send(&mut self, dst: usize, data: &[u8]) -> Result<(), OmbError> {
        write_msg(self.stream(dst)?, data)
    }
    fn recv(&mut self, src: usize, buf: &mut [u8]) -> Result<usize, OmbError> {
        read_msg(self.stream(src)?, src, buf)
    }
    fn exchange(
        &mut self,
        peer: usize,
        window: usize,
        data: &[u8],
        buf: &mut [u8],
    ) -> Result<(), OmbError> {
        let s = self.stream(peer)?;
        let mut w = s.try_clone().map_err(|e| OmbError::io("dup socket", e))?;
        std::thread::scope(|scope| {
            let writer = scope.spawn(move || {
                for _ in 0..window {
                    write_msg(&mut w, data)?;
                }
                Ok(())
            });
            let mut got = Ok(());
            for _ in 0..window {
                if let Err(e) = read_msg(s, peer, buf) {
                    got = Err(e);
                    break;
                }
            }
            let sent = writer
                .join()
                .unwrap_or_else(|_| Err(OmbError::InvalidOptions("sender thread panicked".into())));
            sent.and(got)
        })
    }
    fn sendrecv(&mut self, peer: usize, data: &[u8], buf: &mut [u8]) -> Result<usize, OmbError> {
        let s = self.stream(peer)?;
        let mut w = s.try_clone().map_err(|e| OmbError::io("dup socket", e))?;
        std::thread::scope(|scope| {
            let writer = scope.spawn(move || write_msg(&mut w, data));
            let got = read_msg(s, peer, buf);
            let sent = writer
                .join()
                .unwrap_or_else(|_| Err(OmbError::InvalidOptions("sender thread panicked".into())));
            sent.and(got)
        })
    }
}
