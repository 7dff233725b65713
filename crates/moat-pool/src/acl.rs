//! Ownership and access lists: who a caller is ([`Principal`]), what it may do ([`Perms`]) and the
//! per-map access list ([`AclEntry`]), with the rule of `docs/pool-format.md` §5.1.

use std::fmt;

/// An eBPF program tag (the 8-byte hash the kernel shows as `tag`), identifying a program.
pub type ProgramTag = [u8; 8];

/// Who performs an operation: a user and, for a program, its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Principal {
    /// The user id.
    pub uid: u32,
    /// The program's tag; `None` for the host itself.
    pub tag: Option<ProgramTag>,
}

impl Principal {
    /// The host process's own user (its effective uid), not a program.
    pub fn host() -> Principal {
        Principal {
            uid: current_uid(),
            tag: None,
        }
    }

    /// A program with tag `tag` loaded by the current user.
    pub fn program(tag: ProgramTag) -> Principal {
        Principal {
            uid: current_uid(),
            tag: Some(tag),
        }
    }

    /// The tag as stored in the pool (0 for the host).
    pub(crate) fn tag_u64(&self) -> u64 {
        self.tag.map_or(0, u64::from_le_bytes)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.tag {
            Some(tag) => {
                write!(f, "program ")?;
                for b in tag {
                    write!(f, "{b:02x}")?;
                }
                write!(f, " (uid {})", self.uid)
            }
            None => write!(f, "uid {}", self.uid),
        }
    }
}

/// The effective user id of this process, from `/proc/self/status` (no `unsafe` needed).
pub(crate) fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    // `/proc/self` is owned by the process's effective uid.
    std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
}

/// Read and write permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Perms(u8);

impl Perms {
    /// No access.
    pub const NONE: Perms = Perms(0);
    /// Lookups and iteration.
    pub const READ: Perms = Perms(1);
    /// Updates and deletes.
    pub const WRITE: Perms = Perms(2);
    /// Both.
    pub const READ_WRITE: Perms = Perms(3);

    /// The permission bits as stored (bit 0 read, bit 1 write).
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Permissions from stored bits (unknown bits dropped).
    pub fn from_bits(bits: u8) -> Perms {
        Perms(bits & 3)
    }

    /// Whether every permission of `other` is in `self`.
    pub fn contains(self, other: Perms) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of both.
    pub fn union(self, other: Perms) -> Perms {
        Perms(self.0 | other.0)
    }
}

impl fmt::Display for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = if self.contains(Perms::READ) { "r" } else { "-" };
        let w = if self.contains(Perms::WRITE) {
            "w"
        } else {
            "-"
        };
        write!(f, "{r}{w}")
    }
}

/// Whom an access-list entry grants to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Grantee {
    /// A user id (host code or any program it loads).
    User(u32),
    /// A program with this tag, loaded by any user.
    Program(ProgramTag),
    /// Everyone who can open the pool file.
    Anyone,
}

/// One access-list entry of a map (at most [`MAX_ACL`] per map).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AclEntry {
    /// Who.
    pub grantee: Grantee,
    /// What they may do.
    pub perms: Perms,
}

/// The number of access-list entries a map can hold.
pub const MAX_ACL: usize = 7;

impl AclEntry {
    /// Whether this entry applies to `p`.
    pub(crate) fn matches(&self, p: &Principal) -> bool {
        match self.grantee {
            Grantee::User(uid) => uid == p.uid,
            Grantee::Program(tag) => p.tag == Some(tag),
            Grantee::Anyone => true,
        }
    }

    /// The 16-byte encoding of §5.1.
    pub(crate) fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        let (kind, id) = match self.grantee {
            Grantee::User(uid) => (1u8, u64::from(uid)),
            Grantee::Program(tag) => (2, u64::from_le_bytes(tag)),
            Grantee::Anyone => (3, 0),
        };
        b[0] = kind;
        b[1] = self.perms.bits();
        b[8..16].copy_from_slice(&id.to_le_bytes());
        b
    }

    /// Decodes §5.1; `Ok(None)` for an unused entry, `Err(reason)` for an impossible one.
    pub(crate) fn decode(b: &[u8; 16]) -> Result<Option<AclEntry>, &'static str> {
        let mut id = [0u8; 8];
        id.copy_from_slice(&b[8..16]);
        let id = u64::from_le_bytes(id);
        let perms = Perms::from_bits(b[1]);
        let grantee = match b[0] {
            0 => return Ok(None),
            1 => Grantee::User(u32::try_from(id).map_err(|_| "user id above 2^32")?),
            2 => Grantee::Program(id.to_le_bytes()),
            3 => Grantee::Anyone,
            _ => return Err("unknown access-list entry kind"),
        };
        Ok(Some(AclEntry { grantee, perms }))
    }
}

/// The permissions `p` has on a map owned by (`owner_uid`, `owner_tag`) with access list `acl`.
pub(crate) fn perms_of(p: &Principal, owner_uid: u32, owner_tag: u64, acl: &[AclEntry]) -> Perms {
    if is_owner(p, owner_uid, owner_tag) {
        return Perms::READ_WRITE;
    }
    acl.iter()
        .filter(|e| e.matches(p))
        .fold(Perms::NONE, |acc, e| acc.union(e.perms))
}

/// Whether `p` owns a map owned by (`owner_uid`, `owner_tag`).
pub(crate) fn is_owner(p: &Principal, owner_uid: u32, owner_tag: u64) -> bool {
    p.uid == owner_uid && (owner_tag == 0 || p.tag_u64() == owner_tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(p: Principal, owner: (u32, u64), acl: &[AclEntry], expect: Perms) {
        assert_eq!(
            perms_of(&p, owner.0, owner.1, acl),
            expect,
            "{p} on {acl:?}"
        );
    }

    #[test]
    fn owner_and_access_list_rules() {
        let tag = [1, 2, 3, 4, 5, 6, 7, 8];
        let other = [9; 8];
        let host = Principal { uid: 10, tag: None };
        let prog = Principal {
            uid: 10,
            tag: Some(tag),
        };
        let stranger = Principal { uid: 11, tag: None };
        let acl = [
            AclEntry {
                grantee: Grantee::User(11),
                perms: Perms::READ,
            },
            AclEntry {
                grantee: Grantee::Program(other),
                perms: Perms::WRITE,
            },
        ];
        // A host-created map (tag 0) is owned by its uid, programs of that uid included.
        check(host, (10, 0), &[], Perms::READ_WRITE);
        check(prog, (10, 0), &[], Perms::READ_WRITE);
        check(stranger, (10, 0), &[], Perms::NONE);
        check(stranger, (10, 0), &acl, Perms::READ);
        // A program-owned map is owned by that program only.
        check(host, (10, u64::from_le_bytes(tag)), &[], Perms::NONE);
        check(prog, (10, u64::from_le_bytes(tag)), &[], Perms::READ_WRITE);
        let p_other = Principal {
            uid: 11,
            tag: Some(other),
        };
        check(p_other, (10, 0), &acl, Perms::READ_WRITE);
        let anyone = [AclEntry {
            grantee: Grantee::Anyone,
            perms: Perms::READ,
        }];
        check(stranger, (10, 0), &anyone, Perms::READ);
    }

    #[test]
    fn entries_round_trip_and_reject_unknown_kinds() {
        for e in [
            AclEntry {
                grantee: Grantee::User(7),
                perms: Perms::READ,
            },
            AclEntry {
                grantee: Grantee::Program([0xab; 8]),
                perms: Perms::READ_WRITE,
            },
            AclEntry {
                grantee: Grantee::Anyone,
                perms: Perms::WRITE,
            },
        ] {
            assert_eq!(AclEntry::decode(&e.encode()), Ok(Some(e)));
        }
        assert_eq!(AclEntry::decode(&[0; 16]), Ok(None));
        let mut bad = [0u8; 16];
        bad[0] = 9;
        assert!(AclEntry::decode(&bad).is_err());
    }
}
