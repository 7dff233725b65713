//! What the verifier knows about a program's surroundings, described as data: the context layout of its
//! program type, the maps it may use, the helpers it may call (with their prototypes) and the
//! privilege level of the loader. Map types and helper ids are the kernel's, from [`moat_abi`].

use moat_abi::{HelperId, MapType};

/// What a context field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A plain number.
    Scalar,
    /// The packet's start (`data`).
    PacketData,
    /// One past the packet's end (`data_end`).
    PacketEnd,
    /// The packet's metadata start (`data_meta`).
    PacketMeta,
}

/// One field of a context structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtxField {
    /// Byte offset.
    pub off: u32,
    /// Size in bytes.
    pub size: u32,
    /// What it holds.
    pub kind: FieldKind,
    /// Whether programs may store to it.
    pub writable: bool,
    /// Whether a load may read an aligned part of it (the kernel's narrow loads: allowed for
    /// `__sk_buff`'s numbers and `pt_regs`, never for `xdp_md` or pointer fields).
    pub narrow_loads: bool,
}

/// Bytes of the kernel's x86-64 `struct pt_regs`, the context of kprobes and uprobes.
pub const PT_REGS_BYTES: u32 = 168;

/// What `r1` points to at entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Context {
    /// A plain buffer of `size` bytes (`r1`), with its length in `r2`: the generic context of the CLI
    /// and the conformance suite.
    Buffer {
        /// The buffer's size.
        size: u64,
    },
    /// A structure with typed fields (`struct xdp_md`, `struct __sk_buff`, an embedder's context).
    Struct {
        /// The structure's name, for messages.
        name: &'static str,
        /// Its size in bytes.
        size: u32,
        /// Its accessible fields; other bytes may not be accessed.
        fields: Vec<CtxField>,
        /// Whether the legacy `ldabs`/`ldind` packet loads are allowed (socket filters, tc).
        legacy_packet_loads: bool,
        /// Whether programs may write the packet.
        packet_writable: bool,
    },
}

impl Context {
    /// The kernel's `struct xdp_md`.
    pub fn xdp() -> Context {
        let f = |off, kind| CtxField {
            off,
            size: 4,
            kind,
            writable: false,
            narrow_loads: false,
        };
        Context::Struct {
            name: "xdp_md",
            size: 24,
            fields: vec![
                f(0, FieldKind::PacketData),
                f(4, FieldKind::PacketEnd),
                f(8, FieldKind::PacketMeta),
                f(12, FieldKind::Scalar),
                f(16, FieldKind::Scalar),
                f(20, FieldKind::Scalar),
            ],
            legacy_packet_loads: false,
            packet_writable: true,
        }
    }

    /// The kernel's `struct __sk_buff` as tc classifiers (`writable_packet`) and socket filters see it.
    pub fn sk_buff(writable_packet: bool) -> Context {
        Context::Struct {
            name: "__sk_buff",
            size: 192,
            fields: Context::sk_buff_fields(writable_packet),
            legacy_packet_loads: true,
            packet_writable: writable_packet,
        }
    }

    /// The fields of `struct __sk_buff` for tc programs (`tc`) or socket filters.
    fn sk_buff_fields(tc: bool) -> Vec<CtxField> {
        // Socket filters may write only `cb[]`; tc programs also mark, priority, tc_index, ...
        let f = |off, kind, writable: bool| CtxField {
            off,
            size: 4,
            kind,
            writable: writable && (tc || (48..68).contains(&off)),
            narrow_loads: kind == FieldKind::Scalar,
        };
        let mut fields = vec![
            f(0, FieldKind::Scalar, false),  // len
            f(4, FieldKind::Scalar, false),  // pkt_type
            f(8, FieldKind::Scalar, true),   // mark
            f(12, FieldKind::Scalar, true),  // queue_mapping
            f(16, FieldKind::Scalar, false), // protocol
            f(20, FieldKind::Scalar, false), // vlan_present
            f(24, FieldKind::Scalar, false), // vlan_tci
            f(28, FieldKind::Scalar, false), // vlan_proto
            f(32, FieldKind::Scalar, true),  // priority
            f(36, FieldKind::Scalar, false), // ingress_ifindex
            f(40, FieldKind::Scalar, false), // ifindex
            f(44, FieldKind::Scalar, true),  // tc_index
        ];
        for i in 0..5 {
            fields.push(f(48 + 4 * i, FieldKind::Scalar, true)); // cb[5]
        }
        fields.extend([
            f(68, FieldKind::Scalar, false), // hash
            f(72, FieldKind::Scalar, true),  // tc_classid
            f(76, FieldKind::PacketData, false),
            f(80, FieldKind::PacketEnd, false),
            f(84, FieldKind::Scalar, false), // napi_id
            f(88, FieldKind::Scalar, false), // family
        ]);
        if tc {
            // data_meta: the packet's metadata, for tc programs (the kernel's
            // tc_cls_act_is_valid_access).
            fields.push(CtxField {
                off: 140,
                size: 4,
                kind: FieldKind::PacketMeta,
                writable: false,
                narrow_loads: false,
            });
        }
        fields
    }

    /// The kernel's `struct __sk_buff` as lightweight-tunnel programs (`lwt_in`, `lwt_out`,
    /// `lwt_xmit`) see it, with the rules of `lwt_is_valid_access`: the socket filter's fields
    /// without `tc_classid` and `family` (nor the later ones), `mark`, `priority` and `cb[]`
    /// writable, no legacy `ldabs`/`ldind` loads; only `lwt_xmit` programs may write the packet.
    pub fn lwt(xmit: bool) -> Context {
        let fields = Context::sk_buff_fields(false)
            .into_iter()
            .filter(|f| f.off != 72 && f.off != 88)
            .map(|f| CtxField {
                writable: f.writable || f.off == 8 || f.off == 32,
                ..f
            })
            .collect();
        Context::Struct {
            name: "__sk_buff",
            size: 192,
            fields,
            legacy_packet_loads: false,
            packet_writable: xmit,
        }
    }

    /// The kernel's `struct __sk_buff` as `sk_skb` programs (stream parsers and verdicts of a
    /// sockmap) see it, with the rules of `sk_skb_is_valid_access`: no `mark`, `tc_classid` or
    /// `data_meta`; only `priority` and `tc_index` written; the socket's addresses and ports
    /// readable (addresses whole, ports narrowly too); direct packet reads and writes.
    pub fn sk_skb() -> Context {
        let mut fields: Vec<CtxField> = Context::sk_buff_fields(false)
            .into_iter()
            .filter(|f| f.off != 8 && f.off != 72)
            .map(|f| CtxField {
                writable: f.off == 32 || f.off == 44,
                ..f
            })
            .collect();
        // remote_ip4, local_ip4, remote_ip6[4], local_ip6[4]: whole words only.
        for off in (92..132).step_by(4) {
            fields.push(CtxField {
                off,
                size: 4,
                kind: FieldKind::Scalar,
                writable: false,
                narrow_loads: false,
            });
        }
        // remote_port, local_port.
        for off in [132, 136] {
            fields.push(CtxField {
                off,
                size: 4,
                kind: FieldKind::Scalar,
                writable: false,
                narrow_loads: true,
            });
        }
        Context::Struct {
            name: "__sk_buff",
            size: 192,
            fields,
            legacy_packet_loads: false,
            packet_writable: true,
        }
    }

    /// The kernel's `struct bpf_cgroup_dev_ctx` (12 bytes: `access_type`, `major`, `minor`) of
    /// `cgroup_device` programs, with the rules of `cgroup_dev_is_valid_access`: read-only,
    /// aligned, 4-byte loads, and narrow loads of `access_type`.
    pub fn cgroup_dev() -> Context {
        Context::Struct {
            name: "bpf_cgroup_dev_ctx",
            size: 12,
            fields: (0..3)
                .map(|i| CtxField {
                    off: 4 * i,
                    size: 4,
                    kind: FieldKind::Scalar,
                    writable: false,
                    narrow_loads: i == 0,
                })
                .collect(),
            legacy_packet_loads: false,
            packet_writable: false,
        }
    }

    /// The kernel's `struct bpf_sysctl` (8 bytes: `write`, `file_pos`) of `cgroup_sysctl` programs,
    /// with the rules of `sysctl_is_valid_access`: both read whole or narrowly, `file_pos` also
    /// written as 4 bytes.
    pub fn sysctl() -> Context {
        Context::Struct {
            name: "bpf_sysctl",
            size: 8,
            fields: (0..2)
                .map(|i| CtxField {
                    off: 4 * i,
                    size: 4,
                    kind: FieldKind::Scalar,
                    writable: i == 1,
                    narrow_loads: true,
                })
                .collect(),
            legacy_packet_loads: false,
            packet_writable: false,
        }
    }

    /// The kernel's `struct sk_msg_md` (80 bytes) of `sk_msg` programs, with the rules of
    /// `sk_msg_is_valid_access`: read-only, aligned; `data` and `data_end` (8 bytes) are the
    /// message's bounds (the message is writable); the `__u32` fields from `family` (16) to `size`
    /// (68) are read whole. `sk` (72, a `struct bpf_sock *`) is not described: moat has no
    /// socket pointers, so reading it is refused.
    pub fn sk_msg() -> Context {
        let pointer = |off, kind| CtxField {
            off,
            size: 8,
            kind,
            writable: false,
            narrow_loads: false,
        };
        let mut fields = vec![
            pointer(0, FieldKind::PacketData),
            pointer(8, FieldKind::PacketEnd),
        ];
        fields.extend((4..18).map(|i| CtxField {
            off: 4 * i,
            size: 4,
            kind: FieldKind::Scalar,
            writable: false,
            narrow_loads: false,
        }));
        Context::Struct {
            name: "sk_msg_md",
            size: 80,
            fields,
            legacy_packet_loads: false,
            packet_writable: true,
        }
    }

    /// The kernel's `struct bpf_sock_ops` (224 bytes) as `sock_ops` programs see it, with the rules of
    /// its `sock_ops_is_valid_access`: every access aligned to its size; `reply` (`args[0]`, offset
    /// 4) and `sk_txhash` (164) writable as 4-byte stores; the `__u32` fields read whole (4 bytes),
    /// `bytes_received`, `bytes_acked` and `skb_hwtstamp` read as 8 bytes, `skb_tcp_flags` also
    /// narrowly; `skb_data` and `skb_data_end` (8 bytes) are the packet's bounds (read-only packet).
    /// `sk` (184, a `struct bpf_sock *` or null) is not described: moat has no socket pointers, so
    /// reading it is refused.
    pub fn sock_ops() -> Context {
        let u32_field = |off, writable| CtxField {
            off,
            size: 4,
            kind: FieldKind::Scalar,
            writable,
            narrow_loads: false,
        };
        let u64_field = |off, kind| CtxField {
            off,
            size: 8,
            kind,
            writable: false,
            narrow_loads: false,
        };
        // op, args[4] (reply = args[0]), family, ... up to sk_txhash at 164.
        let mut fields: Vec<CtxField> = (0..=41)
            .map(|i| u32_field(4 * i, i == 1 || i == 41))
            .collect();
        fields.extend([
            u64_field(168, FieldKind::Scalar), // bytes_received
            u64_field(176, FieldKind::Scalar), // bytes_acked
            u64_field(192, FieldKind::PacketData),
            u64_field(200, FieldKind::PacketEnd),
            u32_field(208, false), // skb_len
            CtxField {
                narrow_loads: true,
                ..u32_field(212, false) // skb_tcp_flags
            },
            u64_field(216, FieldKind::Scalar), // skb_hwtstamp
        ]);
        Context::Struct {
            name: "bpf_sock_ops",
            size: 224,
            fields,
            legacy_packet_loads: false,
            packet_writable: false,
        }
    }

    /// The kernel's `struct bpf_sock` (80 bytes) as `cgroup_sock` programs attached at `attach` see
    /// it (`None`: the kernel's default, `BPF_CGROUP_INET_SOCK_CREATE`), with the rules of its
    /// `sock_filter_is_valid_access` and `bpf_sock_is_valid_access`: accesses aligned to their
    /// size; `bound_dev_if`, `mark` and `priority` (0, 16, 20) read and written as 4 bytes, at
    /// socket creation and release only; `src_ip4` (24) readable in `post_bind4` programs,
    /// `src_ip6` (28-43) in `post_bind6`, `src_port` (44) in both; every other field (family,
    /// type, protocol, dst_port, dst_ip4, dst_ip6, state, rx_queue_mapping) read-only everywhere.
    /// Every readable field but the first three may also be read narrowly. (The kernel allows a
    /// narrow read of family, type, protocol, src_port, state and rx_queue_mapping at the
    /// field's first byte only; moat at any aligned offset inside the field, reading no byte
    /// outside it.)
    pub fn sock(attach: Option<moat_abi::AttachType>) -> Context {
        use moat_abi::AttachType as A;
        let create = matches!(
            attach,
            None | Some(A::CgroupInetSockCreate | A::CgroupInetSockRelease)
        );
        let bind4 = attach == Some(A::CgroupInet4PostBind);
        let bind6 = attach == Some(A::CgroupInet6PostBind);
        let fields = (0..20u32)
            .map(|i| 4 * i)
            .filter_map(|off| {
                let (readable, writable) = match off {
                    0 | 16 | 20 => (create, create),
                    24 => (bind4, false),
                    28..=40 => (bind6, false),
                    44 => (bind4 || bind6, false),
                    _ => (true, false),
                };
                readable.then_some(CtxField {
                    off,
                    size: 4,
                    kind: FieldKind::Scalar,
                    writable,
                    narrow_loads: !writable,
                })
            })
            .collect();
        Context::Struct {
            name: "bpf_sock",
            size: 80,
            fields,
            legacy_packet_loads: false,
            packet_writable: false,
        }
    }

    /// The kernel's `struct bpf_sock_addr` (72 bytes) as `cgroup_sock_addr` programs attached at
    /// `attach` see it, with the rules of its `sock_addr_is_valid_access`: accesses aligned to their
    /// size; `user_ip4` (4) only for IPv4 hooks, `user_ip6` (8-23) only for IPv6 hooks,
    /// `msg_src_ip4` (40) only for `sendmsg4`, `msg_src_ip6` (44-59) only for `sendmsg6`: these
    /// and `user_port` (24) are read whole or narrowly and written as 4 bytes; `user_family`,
    /// `family`, `type` and `protocol` are read-only, 4 bytes. Not described (refused): the
    /// kernel's 8-byte accesses to two `user_ip6`/`msg_src_ip6` words at once, and `sk` (64, a
    /// `struct bpf_sock *`: moat has no socket pointers).
    pub fn sock_addr(attach: Option<moat_abi::AttachType>) -> Context {
        use moat_abi::AttachType as A;
        let ip4 = matches!(
            attach,
            Some(
                A::CgroupInet4Bind
                    | A::CgroupInet4Connect
                    | A::CgroupInet4Getpeername
                    | A::CgroupInet4Getsockname
                    | A::CgroupUdp4Sendmsg
                    | A::CgroupUdp4Recvmsg
            )
        );
        let ip6 = matches!(
            attach,
            Some(
                A::CgroupInet6Bind
                    | A::CgroupInet6Connect
                    | A::CgroupInet6Getpeername
                    | A::CgroupInet6Getsockname
                    | A::CgroupUdp6Sendmsg
                    | A::CgroupUdp6Recvmsg
            )
        );
        let send4 = attach == Some(A::CgroupUdp4Sendmsg);
        let send6 = attach == Some(A::CgroupUdp6Sendmsg);
        let fields = (0..15u32)
            .map(|i| 4 * i)
            .filter_map(|off| {
                // (present, an address or port: narrow reads and 4-byte writes)
                let (present, address) = match off {
                    4 => (ip4, true),
                    8..=20 => (ip6, true),
                    24 => (true, true),
                    40 => (send4, true),
                    44..=56 => (send6, true),
                    _ => (true, false),
                };
                present.then_some(CtxField {
                    off,
                    size: 4,
                    kind: FieldKind::Scalar,
                    writable: address,
                    narrow_loads: address,
                })
            })
            .collect();
        Context::Struct {
            name: "bpf_sock_addr",
            size: 72,
            fields,
            legacy_packet_loads: false,
            packet_writable: false,
        }
    }

    /// The kernel's `struct bpf_perf_event_data` (`perf_event` programs): the sampled `pt_regs`
    /// (168 bytes, each register read whole, as `pe_prog_is_valid_access` allows), then
    /// `sample_period` and `addr` (8 bytes each, narrow loads allowed); read-only.
    pub fn perf_event() -> Context {
        let field = |off, narrow_loads| CtxField {
            off,
            size: 8,
            kind: FieldKind::Scalar,
            writable: false,
            narrow_loads,
        };
        let regs = (0..PT_REGS_BYTES / 8).map(|i| field(i * 8, false));
        Context::Struct {
            name: "struct bpf_perf_event_data",
            size: PT_REGS_BYTES + 16,
            fields: regs
                .chain([field(PT_REGS_BYTES, true), field(PT_REGS_BYTES + 8, true)])
                .collect(),
            legacy_packet_loads: false,
            packet_writable: false,
        }
    }

    /// A read-only buffer of `size` bytes for tracing programs (registers or a tracepoint record).
    pub fn tracing(size: u32) -> Context {
        Context::Struct {
            name: "tracing context",
            size,
            fields: (0..size / 8)
                .map(|i| CtxField {
                    off: i * 8,
                    size: 8,
                    kind: FieldKind::Scalar,
                    writable: false,
                    narrow_loads: true,
                })
                .collect(),
            legacy_packet_loads: false,
            packet_writable: false,
        }
    }
}

/// A map as the verifier sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapInfo {
    /// Its name, for messages.
    pub name: String,
    /// `BPF_MAP_TYPE_*` ([`MapType`]'s number; any number an object declares).
    pub map_type: u32,
    /// Key size.
    pub key_size: u32,
    /// Value size.
    pub value_size: u32,
    /// Maximum entries.
    pub max_entries: u32,
    /// Whether programs may not write its values (`BPF_F_RDONLY_PROG`).
    pub read_only: bool,
    /// Whether atomic read-modify-writes still apply in place to its read-only values (the
    /// counters of a persistent pool's map).
    pub atomic_in_place: bool,
    /// For a map of maps (`ARRAY_OF_MAPS`, `HASH_OF_MAPS`): the index, among the environment's
    /// maps, of the map its values are like (an inner map of the object, or a template the
    /// caller appends after the object's maps). A lookup returns a map like it, or null.
    pub inner: Option<usize>,
}

/// `BPF_MAP_TYPE_ARRAY`'s number, as [`MapInfo::map_type`] holds it. Kept for the checker's uses
/// until they name [`MapType`] itself; the numbers are moat-abi's.
pub mod map_type {
    /// [`moat_abi::MapType::Array`].
    pub const ARRAY: u32 = moat_abi::MapType::Array.as_u32();
}

/// Which maps a map argument accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapClass {
    /// Maps with keys and values a program can look up.
    Keyed,
    /// Queues and stacks.
    Queue,
    /// Ring buffers.
    RingBuf,
    /// Program arrays.
    ProgArray,
    /// Stack trace maps (`bpf_get_stackid`).
    StackTrace,
    /// Perf event arrays (`bpf_perf_event_output`, `bpf_perf_event_read`).
    PerfEventArray,
    /// Any map.
    Any,
}

impl MapClass {
    /// Whether a map of type `t` (a `BPF_MAP_TYPE_*` number) fits.
    pub fn accepts(self, t: u32) -> bool {
        if self == MapClass::Any {
            return true;
        }
        let Some(t) = MapType::from_u32(t) else {
            return false;
        };
        match self {
            MapClass::Keyed => matches!(
                t,
                MapType::Hash
                    | MapType::Array
                    | MapType::PercpuHash
                    | MapType::PercpuArray
                    | MapType::LruHash
                    | MapType::LruPercpuHash
                    | MapType::LpmTrie
            ),
            MapClass::Queue => matches!(t, MapType::Queue | MapType::Stack),
            MapClass::RingBuf => t == MapType::RingBuf,
            MapClass::ProgArray => t == MapType::ProgArray,
            MapClass::StackTrace => t == MapType::StackTrace,
            MapClass::PerfEventArray => t == MapType::PerfEventArray,
            MapClass::Any => true,
        }
    }
}

/// The kind of one helper argument, as in the kernel's `enum bpf_arg_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    /// Unused.
    None,
    /// Any initialised value.
    Anything,
    /// A number (not a pointer, in unprivileged mode).
    Scalar,
    /// A map handle of this class.
    Map(MapClass),
    /// A pointer to `key_size` initialised bytes (the map is the previous argument).
    MapKey,
    /// A pointer to `value_size` initialised bytes (the map is the first argument).
    MapValue,
    /// A pointer to `value_size` writable bytes the helper fills.
    MapValueOut,
    /// A pointer to readable memory whose size is the next argument.
    MemIn,
    /// Like [`Arg::MemIn`], or null when the size is zero.
    MemInOrNull,
    /// A pointer to writable memory (may be uninitialised) whose size is the next argument.
    MemOut,
    /// A constant or bounded size for the previous memory argument, greater than zero.
    Size,
    /// Like [`Arg::Size`], zero allowed.
    SizeOrZero,
    /// A constant allocation size (ring buffer reservations).
    AllocSize,
    /// The program's context pointer.
    Ctx,
    /// A function of the program (callback).
    Func,
    /// Memory reserved in a ring buffer (released by this helper).
    RingbufMem,
    /// A pointer to 8 writable bytes.
    Long,
    /// A pointer to a `struct bpf_spin_lock` in a map value.
    SpinLock,
    /// A NUL-terminated string in read-only memory.
    ConstStr,
    /// Any address (read with fault handling, e.g. `bpf_probe_read`).
    AnyAddr,
}

/// What a helper returns, as in the kernel's `enum bpf_return_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    /// A number.
    Integer,
    /// Nothing (`r0` becomes uninitialised).
    Void,
    /// A pointer to a value of the map in argument 1, or null.
    MapValueOrNull,
    /// A ring buffer reservation of the size in argument 2, or null.
    RingbufMemOrNull,
}

/// How a callback argument is set up, for helpers that call program functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callback {
    /// Not a callback helper.
    None,
    /// `bpf_loop`: `callback(u32 index, ctx)`.
    Loop,
    /// `bpf_for_each_map_elem`: `callback(map, key, value, ctx)`.
    ForEachMapElem,
}

/// A helper's prototype.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperProto {
    /// The helper's name.
    pub name: String,
    /// Its five arguments.
    pub args: [Arg; 5],
    /// Its return.
    pub ret: Ret,
    /// Whether it calls a program function back (the `Func` argument).
    pub callback: Callback,
}

impl HelperProto {
    fn new(name: &str, args: &[Arg], ret: Ret) -> HelperProto {
        let mut a = [Arg::None; 5];
        for (dst, src) in a.iter_mut().zip(args) {
            *dst = *src;
        }
        HelperProto {
            name: name.to_string(),
            args: a,
            ret,
            callback: Callback::None,
        }
    }

    /// A prototype for an embedder's helper whose arguments the verifier cannot know: each must be
    /// initialised; the helper itself checks memory it accesses.
    pub fn opaque(name: &str) -> HelperProto {
        HelperProto::new(name, &[Arg::Anything; 5], Ret::Integer)
    }

    /// The kernel's prototype of helper `id`, for the helpers moat implements or verifies
    /// ([`HelperProto::for_helper`]).
    pub fn kernel(id: u32) -> Option<HelperProto> {
        HelperProto::for_helper(HelperId::from_u32(id)?)
    }

    /// The kernel's prototype of helper `h`, named as the kernel names it, for the helpers moat
    /// implements (and, through `kernel_only`, those it verifies but does not run).
    pub fn for_helper(h: HelperId) -> Option<HelperProto> {
        use Arg::*;
        use HelperId as H;
        let keyed = Map(MapClass::Keyed);
        let p = |args: &[Arg], ret| Some(HelperProto::new(h.name(), args, ret));
        match h {
            H::MapLookupElem => p(&[keyed, MapKey], Ret::MapValueOrNull),
            H::MapUpdateElem => p(&[keyed, MapKey, MapValue, Scalar], Ret::Integer),
            H::MapDeleteElem => p(&[keyed, MapKey], Ret::Integer),
            H::ProbeRead => p(&[MemOut, SizeOrZero, AnyAddr], Ret::Integer),
            H::KtimeGetNs => p(&[], Ret::Integer),
            // Arguments 3-5 are passed through unchecked, as in the kernel.
            H::TracePrintk => p(&[MemIn, Size], Ret::Integer),
            H::GetPrandomU32 => p(&[], Ret::Integer),
            H::GetSmpProcessorId => p(&[], Ret::Integer),
            H::TailCall => p(&[Ctx, Map(MapClass::ProgArray), Scalar], Ret::Void),
            H::GetCurrentPidTgid => p(&[], Ret::Integer),
            H::GetCurrentUidGid => p(&[], Ret::Integer),
            H::GetCurrentComm => p(&[MemOut, Size], Ret::Integer),
            H::MapPushElem => p(&[Map(MapClass::Queue), MapValue, Scalar], Ret::Integer),
            H::MapPopElem => p(&[Map(MapClass::Queue), MapValueOut], Ret::Integer),
            H::MapPeekElem => p(&[Map(MapClass::Queue), MapValueOut], Ret::Integer),
            H::SpinLock => p(&[SpinLock], Ret::Void),
            H::SpinUnlock => p(&[SpinLock], Ret::Void),
            H::Strtol => p(&[MemIn, Size, Scalar, Long], Ret::Integer),
            H::Strtoul => p(&[MemIn, Size, Scalar, Long], Ret::Integer),
            H::ProbeReadUser => p(&[MemOut, SizeOrZero, AnyAddr], Ret::Integer),
            H::ProbeReadKernel => p(&[MemOut, SizeOrZero, AnyAddr], Ret::Integer),
            H::ProbeReadUserStr => p(&[MemOut, SizeOrZero, AnyAddr], Ret::Integer),
            H::ProbeReadKernelStr => p(&[MemOut, SizeOrZero, AnyAddr], Ret::Integer),
            H::KtimeGetBootNs => p(&[], Ret::Integer),
            H::Jiffies64 => p(&[], Ret::Integer),
            H::RingbufOutput => p(
                &[Map(MapClass::RingBuf), MemIn, SizeOrZero, Scalar],
                Ret::Integer,
            ),
            H::RingbufReserve => p(
                &[Map(MapClass::RingBuf), AllocSize, Scalar],
                Ret::RingbufMemOrNull,
            ),
            H::RingbufSubmit => p(&[RingbufMem, Scalar], Ret::Void),
            H::RingbufDiscard => p(&[RingbufMem, Scalar], Ret::Void),
            H::RingbufQuery => p(&[Map(MapClass::RingBuf), Scalar], Ret::Integer),
            H::ForEachMapElem => Some(HelperProto {
                callback: Callback::ForEachMapElem,
                ..HelperProto::new(h.name(), &[keyed, Func, Anything, Scalar], Ret::Integer)
            }),
            H::Snprintf => p(
                &[MemOut, SizeOrZero, ConstStr, MemInOrNull, SizeOrZero],
                Ret::Integer,
            ),
            H::Loop => Some(HelperProto {
                callback: Callback::Loop,
                ..HelperProto::new(h.name(), &[Scalar, Func, Anything, Scalar], Ret::Integer)
            }),
            H::GetStackid => p(&[Ctx, Map(MapClass::StackTrace), Scalar], Ret::Integer),
            H::GetStack => p(&[Ctx, MemOut, SizeOrZero, Scalar], Ret::Integer),
            H::PerfEventOutput => p(
                &[
                    Ctx,
                    Map(MapClass::PerfEventArray),
                    Scalar,
                    MemIn,
                    SizeOrZero,
                ],
                Ret::Integer,
            ),
            _ => HelperProto::kernel_only(h),
        }
    }

    /// Prototypes of kernel helpers moat verifies but does not run (a program using one verifies,
    /// then fails to load with "unknown helper"): enough for real-world objects to be judged.
    fn kernel_only(h: HelperId) -> Option<HelperProto> {
        use Arg::*;
        use HelperId as H;
        let p = |args: &[Arg], ret| Some(HelperProto::new(h.name(), args, ret));
        let any = Map(MapClass::Any);
        match h {
            H::SkbStoreBytes => p(&[Ctx, Scalar, MemIn, Size, Scalar], Ret::Integer),
            H::L3CsumReplace => p(&[Ctx, Scalar, Scalar, Scalar, Scalar], Ret::Integer),
            H::L4CsumReplace => p(&[Ctx, Scalar, Scalar, Scalar, Scalar], Ret::Integer),
            H::CloneRedirect => p(&[Ctx, Scalar, Scalar], Ret::Integer),
            H::GetCgroupClassid => p(&[Ctx], Ret::Integer),
            H::SkbVlanPush => p(&[Ctx, Scalar, Scalar], Ret::Integer),
            H::SkbVlanPop => p(&[Ctx], Ret::Integer),
            H::SkbGetTunnelKey => p(&[Ctx, MemOut, Size, Scalar], Ret::Integer),
            H::SkbSetTunnelKey => p(&[Ctx, MemIn, Size, Scalar], Ret::Integer),
            H::PerfEventRead => p(&[Map(MapClass::PerfEventArray), Scalar], Ret::Integer),
            H::PerfProgReadValue => p(&[Ctx, MemOut, Size], Ret::Integer),
            H::Redirect => p(&[Scalar, Scalar], Ret::Integer),
            H::GetRouteRealm => p(&[Ctx], Ret::Integer),
            H::SkbLoadBytes => p(&[Ctx, Scalar, MemOut, Size], Ret::Integer),
            H::CsumDiff => p(
                &[MemInOrNull, SizeOrZero, MemInOrNull, SizeOrZero, Scalar],
                Ret::Integer,
            ),
            H::SkbGetTunnelOpt => p(&[Ctx, MemOut, Size], Ret::Integer),
            H::SkbSetTunnelOpt => p(&[Ctx, MemIn, Size], Ret::Integer),
            H::SkbChangeProto => p(&[Ctx, Scalar, Scalar], Ret::Integer),
            H::SkbChangeType => p(&[Ctx, Scalar], Ret::Integer),
            H::SkbUnderCgroup => p(&[Ctx, any, Scalar], Ret::Integer),
            H::GetHashRecalc => p(&[Ctx], Ret::Integer),
            H::GetCurrentTask => p(&[], Ret::Integer),
            H::ProbeWriteUser => p(&[AnyAddr, MemIn, Size], Ret::Integer),
            H::CurrentTaskUnderCgroup => p(&[any, Scalar], Ret::Integer),
            H::SkbChangeTail => p(&[Ctx, Scalar, Scalar], Ret::Integer),
            H::SkbPullData => p(&[Ctx, Scalar], Ret::Integer),
            H::CsumUpdate => p(&[Ctx, Scalar], Ret::Integer),
            H::SetHashInvalid => p(&[Ctx], Ret::Integer),
            H::GetNumaNodeId => p(&[], Ret::Integer),
            H::SkbChangeHead => p(&[Ctx, Scalar, Scalar], Ret::Integer),
            H::XdpAdjustHead => p(&[Ctx, Scalar], Ret::Integer),
            H::ProbeReadStr => p(&[MemOut, SizeOrZero, AnyAddr], Ret::Integer),
            H::GetSocketCookie => p(&[Ctx], Ret::Integer),
            H::GetSocketUid => p(&[Ctx], Ret::Integer),
            H::SetHash => p(&[Ctx, Scalar], Ret::Integer),
            H::SkbAdjustRoom => p(&[Ctx, Scalar, Scalar, Scalar], Ret::Integer),
            H::RedirectMap => p(&[any, Scalar, Scalar], Ret::Integer),
            H::XdpAdjustMeta => p(&[Ctx, Scalar], Ret::Integer),
            H::PerfEventReadValue => p(&[any, Scalar, MemOut, Size], Ret::Integer),
            H::OverrideReturn => p(&[Ctx, Scalar], Ret::Integer),
            H::XdpAdjustTail => p(&[Ctx, Scalar], Ret::Integer),
            H::SkbLoadBytesRelative => p(&[Ctx, Scalar, MemOut, Size, Scalar], Ret::Integer),
            H::FibLookup => p(&[Ctx, MemOut, Size, Scalar], Ret::Integer),
            H::SkbCgroupId => p(&[Ctx], Ret::Integer),
            H::GetCurrentCgroupId => p(&[], Ret::Integer),
            H::Jiffies64 => p(&[], Ret::Integer),
            H::SkbAncestorCgroupId => p(&[Ctx, Scalar], Ret::Integer),
            H::SkbEcnSetCe => p(&[Ctx], Ret::Integer),
            H::GetNetnsCookie => p(&[Anything], Ret::Integer),
            H::RedirectPeer => p(&[Scalar, Scalar], Ret::Integer),
            H::RedirectNeigh => p(&[Scalar, MemInOrNull, SizeOrZero, Scalar], Ret::Integer),
            // The sock_ops prototypes (`bpf_sock_ops_setsockopt_proto` and friends of
            // `net/core/filter.c`): the context, a level and an option name, the option's bytes.
            H::Setsockopt => p(&[Ctx, Scalar, Scalar, MemIn, Size], Ret::Integer),
            H::Getsockopt => p(&[Ctx, Scalar, Scalar, MemOut, Size], Ret::Integer),
            H::SockOpsCbFlagsSet => p(&[Ctx, Scalar], Ret::Integer),
            _ => Option::None,
        }
    }
}

/// Everything the verifier is told about a program besides its code.
pub struct Env<'a> {
    /// What `r1` points to at entry.
    pub context: Context,
    /// The maps `lddw rX, map_idx(N)` refers to.
    pub maps: Vec<MapInfo>,
    /// The prototype of each callable helper id.
    pub helpers: &'a dyn Fn(u32) -> Option<HelperProto>,
    /// Whether the loader is privileged (root): pointer leaks, uninitialised stack reads and pointer
    /// comparisons allowed, as in the kernel.
    pub privileged: bool,
    /// Instructions the analysis may process before giving up (the kernel's 1 000 000).
    pub complexity_limit: u64,
    /// Whether to keep a per-instruction log of register states.
    pub log: bool,
    /// The kernel program type whose helper rules apply: a helper the kernel does not offer to
    /// the type is refused, and a GPL-only one unless [`Env::gpl_compatible`]
    /// ([`moat_abi::HelperId::access`]). `None`: no such rules (moat's buffer programs, types the
    /// table has no column for).
    pub kernel_type: Option<moat_abi::ProgType>,
    /// Whether the program's license is GPL-compatible ([`moat_abi::license_is_gpl_compatible`]).
    pub gpl_compatible: bool,
    /// The values the main function may return (`r0` at its `exit`), inclusive
    /// ([`moat_abi::ProgType::return_range`]); `None`: any number.
    pub return_range: Option<(u64, u64)>,
}

impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("context", &self.context)
            .field("maps", &self.maps)
            .field("privileged", &self.privileged)
            .finish()
    }
}

/// The kernel's complexity limit, `BPF_COMPLEXITY_LIMIT_INSNS`.
pub const DEFAULT_COMPLEXITY_LIMIT: u64 = moat_abi::COMPLEXITY_LIMIT_INSNS;

impl<'a> Env<'a> {
    /// A privileged environment with `context`, no maps and the kernel's helpers.
    pub fn new(context: Context) -> Env<'static> {
        Env {
            context,
            maps: Vec::new(),
            helpers: &HelperProto::kernel,
            privileged: true,
            complexity_limit: DEFAULT_COMPLEXITY_LIMIT,
            log: false,
            kernel_type: None,
            gpl_compatible: true,
            return_range: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prototypes_are_keyed_and_named_by_the_kernels_helper_ids() {
        let tail_call = HelperProto::kernel(HelperId::TailCall.as_u32()).expect("tail call");
        assert_eq!(tail_call.name, "bpf_tail_call");
        assert_eq!(tail_call.args[1], Arg::Map(MapClass::ProgArray));
        let loop_ = HelperProto::for_helper(HelperId::Loop).expect("bpf_loop");
        assert_eq!(
            (loop_.name.as_str(), loop_.callback),
            ("bpf_loop", Callback::Loop)
        );
        // Verified but not run by moat.
        assert!(HelperProto::for_helper(HelperId::SkbLoadBytes).is_some());
        // No prototype: no such helper, or one moat does not know.
        assert_eq!(HelperProto::kernel(0), None);
        assert_eq!(HelperProto::kernel(0x6d6f_0001), None);
        assert_eq!(HelperProto::for_helper(HelperId::SysBpf), None);
        for h in HelperId::ALL {
            if let Some(p) = HelperProto::for_helper(*h) {
                assert_eq!(p.name, h.name());
            }
        }
    }

    /// The field at `off`, if the context has one starting there.
    fn field(ctx: &Context, off: u32) -> Option<CtxField> {
        let Context::Struct { fields, .. } = ctx else {
            return None;
        };
        fields.iter().find(|f| f.off == off).copied()
    }

    #[test]
    fn socket_contexts_follow_the_kernels_access_rules() {
        use moat_abi::AttachType as A;
        let ops = Context::sock_ops();
        assert!(field(&ops, 4).is_some_and(|f| f.writable)); // reply
        assert!(field(&ops, 0).is_some_and(|f| !f.writable && !f.narrow_loads)); // op
        assert!(field(&ops, 168).is_some_and(|f| f.size == 8)); // bytes_received
        assert_eq!(
            field(&ops, 192).map(|f| f.kind),
            Some(FieldKind::PacketData)
        );
        assert_eq!(field(&ops, 184), None); // sk: no socket pointers
        let create = Context::sock(None);
        assert!(field(&create, 16).is_some_and(|f| f.writable)); // mark
        assert_eq!(field(&create, 44), None); // src_port: post_bind only
        let bind4 = Context::sock(Some(A::CgroupInet4PostBind));
        assert_eq!(field(&bind4, 16), None);
        assert!(field(&bind4, 24).is_some_and(|f| !f.writable)); // src_ip4
        assert_eq!(field(&bind4, 28), None); // src_ip6: post_bind6 only
        let connect4 = Context::sock_addr(Some(A::CgroupInet4Connect));
        assert!(field(&connect4, 4).is_some_and(|f| f.writable && f.narrow_loads));
        assert_eq!(field(&connect4, 8), None); // user_ip6
        assert_eq!(field(&connect4, 40), None); // msg_src_ip4: sendmsg4 only
        let send6 = Context::sock_addr(Some(A::CgroupUdp6Sendmsg));
        assert!(field(&send6, 44).is_some_and(|f| f.writable));
        assert!(field(&send6, 0).is_some_and(|f| !f.writable)); // user_family
    }

    #[test]
    fn cgroup_device_context_is_read_only() {
        let dev = Context::cgroup_dev();
        assert!(field(&dev, 0).is_some_and(|f| f.narrow_loads && !f.writable));
        assert!(field(&dev, 8).is_some_and(|f| !f.narrow_loads && !f.writable));
        assert_eq!(field(&dev, 12), None);
    }

    #[test]
    fn sysctl_context_writes_file_pos_only() {
        let sysctl = Context::sysctl();
        assert!(field(&sysctl, 0).is_some_and(|f| !f.writable && f.narrow_loads));
        assert!(field(&sysctl, 4).is_some_and(|f| f.writable));
        assert_eq!(field(&sysctl, 8), None);
    }

    #[test]
    fn sk_msg_context_is_read_only_with_packet_bounds() {
        let msg = Context::sk_msg();
        assert_eq!(field(&msg, 0).map(|f| f.kind), Some(FieldKind::PacketData));
        assert_eq!(field(&msg, 8).map(|f| f.kind), Some(FieldKind::PacketEnd));
        assert!(field(&msg, 68).is_some_and(|f| !f.writable)); // size
        assert_eq!(field(&msg, 72), None); // sk: no socket pointers
    }

    #[test]
    fn lwt_contexts_are_sk_buff_subsets() {
        for xmit in [false, true] {
            let lwt = Context::lwt(xmit);
            assert!(field(&lwt, 8).is_some_and(|f| f.writable)); // mark
            assert!(field(&lwt, 44).is_some_and(|f| !f.writable)); // tc_index
            assert_eq!(field(&lwt, 72), None); // tc_classid
            assert_eq!(field(&lwt, 88), None); // family
            assert!(matches!(
                lwt,
                Context::Struct { packet_writable, legacy_packet_loads: false, .. }
                    if packet_writable == xmit
            ));
        }
    }

    #[test]
    fn map_classes_take_the_kernels_map_types() {
        let n = MapType::as_u32;
        assert!(MapClass::Keyed.accepts(n(MapType::LruPercpuHash)));
        assert!(!MapClass::Keyed.accepts(n(MapType::Queue)));
        assert!(MapClass::Queue.accepts(n(MapType::Stack)));
        assert!(MapClass::RingBuf.accepts(n(MapType::RingBuf)));
        assert!(!MapClass::RingBuf.accepts(n(MapType::UserRingBuf)));
        assert!(MapClass::ProgArray.accepts(n(MapType::ProgArray)));
        assert!(MapClass::Any.accepts(n(MapType::PerfEventArray)));
        assert!(MapClass::Any.accepts(0xdead));
        assert!(!MapClass::Keyed.accepts(0xdead));
        assert_eq!(map_type::ARRAY, n(MapType::Array));
    }
}
