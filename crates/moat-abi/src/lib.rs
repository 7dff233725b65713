//! The Linux kernel's eBPF ABI numbers, each written down once: map types ([`MapType`], `enum
//! bpf_map_type`) with the map update and creation flags (`BPF_ANY`, `BPF_F_NO_PREALLOC`, ...),
//! helper ids ([`HelperId`], `enum bpf_func_id`, the whole `__BPF_FUNC_MAPPER` list), program and
//! attach types ([`ProgType`], [`AttachType`]) with libbpf's section names ([`section_def`]), and the
//! `bpf(2)` commands ([`Cmd`]), the verifier's call and frame limits ([`MAX_CALL_FRAMES`], [`STACK_FRAME_SIZE`], ...).
//!
//! Every enum is numbered as `include/uapi/linux/bpf.h` numbers it and named as libbpf names it
//! (`"hash"`, `"bpf_map_lookup_elem"`, `"sched_cls"`); each has `as_u32` / `from_u32` and `name` /
//! `from_name`, and lists every value the kernel defines — also those moat does not implement:
//! which of them a runtime supports is not this crate's business.
//!
//! ```
//! use moat_abi::{HelperId, MapType, ProgType};
//!
//! assert_eq!(MapType::from_u32(27), Some(MapType::RingBuf));
//! assert_eq!(MapType::RingBuf.name(), "ringbuf");
//! assert_eq!(HelperId::from_name("bpf_tail_call"), Some(HelperId::TailCall));
//! assert_eq!(HelperId::Loop.as_u32(), 181);
//! assert_eq!(moat_abi::section_def("xdp/devmap").map(|d| d.prog_type), Some(ProgType::Xdp));
//! ```
//!
//! This crate depends on nothing, so that every moat crate — even the maps and pools, which know no
//! other moat crate — can take its numbers from here.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// Defines a kernel enum from `Variant = number => "name"` rows: the enum (`#[repr(u32)]`, each
/// variant documented with its name and number), `ALL`, `as_u32`, `from_u32`, `name`, `from_name`,
/// `Display` and `From<_> for u32`.
macro_rules! kernel_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($variant:ident = $num:literal => $text:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u32)]
        #[non_exhaustive]
        pub enum $name {
            $(
                #[doc = concat!("`", $text, "` (", stringify!($num), ").")]
                $variant = $num,
            )*
        }

        impl $name {
            /// Every value the kernel defines, in its order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The kernel's number.
            pub const fn as_u32(self) -> u32 {
                self as u32
            }

            /// The value the kernel numbers `raw`, if there is one.
            pub const fn from_u32(raw: u32) -> Option<$name> {
                match raw {
                    $($num => Some($name::$variant),)*
                    _ => None,
                }
            }

            /// The name libbpf and `bpftool` use.
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// The value named `name` (as [`Self::name`] spells it).
            pub fn from_name(name: &str) -> Option<$name> {
                match name {
                    $($text => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl From<$name> for u32 {
            fn from(value: $name) -> u32 {
                value.as_u32()
            }
        }
    };
}

mod access;
mod cmd;
mod helper;
mod limits;
mod map;
mod prog;

pub use access::{
    license_is_gpl_compatible, HelperAccess, HELPER_TABLE_KERNEL, HELPER_TABLE_TYPES,
};
pub use cmd::{
    Cmd, BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE, BPF_PSEUDO_MAP_VALUE,
    PERF_EVENT_IOC_DISABLE, PERF_EVENT_IOC_ENABLE, PERF_EVENT_IOC_SET_BPF,
};
pub use helper::HelperId;
pub use limits::{
    COMPLEXITY_LIMIT_INSNS, MAX_CALL_FRAMES, MAX_LOOPS, MAX_TAIL_CALLS, STACK_FRAME_SIZE,
};
pub use map::{
    MapType, BPF_ANY, BPF_EXIST, BPF_F_CLONE, BPF_F_FAST_STACK_CMP, BPF_F_INNER_MAP, BPF_F_LINK,
    BPF_F_LOCK, BPF_F_MMAPABLE, BPF_F_NO_COMMON_LRU, BPF_F_NO_PREALLOC, BPF_F_NO_USER_CONV,
    BPF_F_NUMA_NODE, BPF_F_PATH_FD, BPF_F_PRESERVE_ELEMS, BPF_F_RB_OVERWRITE, BPF_F_RDONLY,
    BPF_F_RDONLY_PROG, BPF_F_REUSE_STACKID, BPF_F_SEGV_ON_FAULT, BPF_F_SKIP_FIELD_MASK,
    BPF_F_STACK_BUILD_ID, BPF_F_TOKEN_FD, BPF_F_USER_BUILD_ID, BPF_F_USER_STACK,
    BPF_F_VTYPE_BTF_OBJ_FD, BPF_F_WRONLY, BPF_F_WRONLY_PROG, BPF_F_ZERO_SEED, BPF_NOEXIST,
    PERF_MAX_STACK_DEPTH,
};
pub use prog::{section_def, AttachType, ProgType, SectionDef, SECTION_DEFS};

/// Checks an enum's table: every value round-trips through its number and its name, and no number
/// or name appears twice.
#[cfg(test)]
fn check_table<T: Copy + Eq + core::fmt::Debug>(
    all: &[T],
    number: impl Fn(T) -> u32,
    from_number: impl Fn(u32) -> Option<T>,
    name: impl Fn(T) -> &'static str,
    from_name: impl Fn(&str) -> Option<T>,
) {
    let mut numbers = std::collections::BTreeSet::new();
    let mut names = std::collections::BTreeSet::new();
    for &v in all {
        assert_eq!(from_number(number(v)), Some(v), "{v:?} by number");
        assert_eq!(from_name(name(v)), Some(v), "{v:?} by name");
        assert!(
            numbers.insert(number(v)),
            "{v:?}: number {} twice",
            number(v)
        );
        assert!(names.insert(name(v)), "{v:?}: name {} twice", name(v));
    }
}
