//! What the verifier knows about a program's surroundings, described as data: the context layout of its
//! program type, the maps it may use, the helpers it may call (with their prototypes) and the
//! privilege level of the loader.

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
}

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
        // Socket filters may write only `cb[]`; tc programs also mark, priority, tc_index, ...
        let tc = writable_packet;
        let f = |off, kind, writable: bool| CtxField {
            off,
            size: 4,
            kind,
            writable: writable && (tc || (48..68).contains(&off)),
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
        Context::Struct {
            name: "__sk_buff",
            size: 192,
            fields,
            legacy_packet_loads: true,
            packet_writable: writable_packet,
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
    /// `BPF_MAP_TYPE_*`.
    pub map_type: u32,
    /// Key size.
    pub key_size: u32,
    /// Value size.
    pub value_size: u32,
    /// Maximum entries.
    pub max_entries: u32,
    /// Whether programs may not write its values (`BPF_F_RDONLY_PROG`).
    pub read_only: bool,
}

/// Map type numbers the helper prototypes care about.
pub mod map_type {
    /// Hash.
    pub const HASH: u32 = 1;
    /// Array.
    pub const ARRAY: u32 = 2;
    /// Program array.
    pub const PROG_ARRAY: u32 = 3;
    /// Per-CPU hash.
    pub const PERCPU_HASH: u32 = 5;
    /// Per-CPU array.
    pub const PERCPU_ARRAY: u32 = 6;
    /// LRU hash.
    pub const LRU_HASH: u32 = 9;
    /// LRU per-CPU hash.
    pub const LRU_PERCPU_HASH: u32 = 10;
    /// LPM trie.
    pub const LPM_TRIE: u32 = 11;
    /// Queue.
    pub const QUEUE: u32 = 22;
    /// Stack.
    pub const STACK: u32 = 23;
    /// Ring buffer.
    pub const RINGBUF: u32 = 27;
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
    /// Any map.
    Any,
}

impl MapClass {
    /// Whether a map of type `t` fits.
    pub fn accepts(self, t: u32) -> bool {
        use map_type::*;
        match self {
            MapClass::Keyed => matches!(
                t,
                HASH | ARRAY | PERCPU_HASH | PERCPU_ARRAY | LRU_HASH | LRU_PERCPU_HASH | LPM_TRIE
            ),
            MapClass::Queue => matches!(t, QUEUE | STACK),
            MapClass::RingBuf => t == RINGBUF,
            MapClass::ProgArray => t == PROG_ARRAY,
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

    /// The kernel's prototype of helper `id`, for the helpers moat implements.
    pub fn kernel(id: u32) -> Option<HelperProto> {
        use Arg::*;
        let keyed = Map(MapClass::Keyed);
        let p = |name, args: &[Arg], ret| Some(HelperProto::new(name, args, ret));
        match id {
            1 => p("bpf_map_lookup_elem", &[keyed, MapKey], Ret::MapValueOrNull),
            2 => p(
                "bpf_map_update_elem",
                &[keyed, MapKey, MapValue, Scalar],
                Ret::Integer,
            ),
            3 => p("bpf_map_delete_elem", &[keyed, MapKey], Ret::Integer),
            4 => p(
                "bpf_probe_read",
                &[MemOut, SizeOrZero, AnyAddr],
                Ret::Integer,
            ),
            5 => p("bpf_ktime_get_ns", &[], Ret::Integer),
            // Arguments 3-5 are passed through unchecked, as in the kernel.
            6 => p("bpf_trace_printk", &[MemIn, Size], Ret::Integer),
            7 => p("bpf_get_prandom_u32", &[], Ret::Integer),
            8 => p("bpf_get_smp_processor_id", &[], Ret::Integer),
            12 => p(
                "bpf_tail_call",
                &[Ctx, Map(MapClass::ProgArray), Scalar],
                Ret::Integer,
            ),
            14 => p("bpf_get_current_pid_tgid", &[], Ret::Integer),
            15 => p("bpf_get_current_uid_gid", &[], Ret::Integer),
            16 => p("bpf_get_current_comm", &[MemOut, Size], Ret::Integer),
            87 => p(
                "bpf_map_push_elem",
                &[Map(MapClass::Queue), MapValue, Scalar],
                Ret::Integer,
            ),
            88 => p(
                "bpf_map_pop_elem",
                &[Map(MapClass::Queue), MapValueOut],
                Ret::Integer,
            ),
            89 => p(
                "bpf_map_peek_elem",
                &[Map(MapClass::Queue), MapValueOut],
                Ret::Integer,
            ),
            93 => p("bpf_spin_lock", &[SpinLock], Ret::Void),
            94 => p("bpf_spin_unlock", &[SpinLock], Ret::Void),
            105 => p("bpf_strtol", &[MemIn, Size, Scalar, Long], Ret::Integer),
            106 => p("bpf_strtoul", &[MemIn, Size, Scalar, Long], Ret::Integer),
            112 => p(
                "bpf_probe_read_user",
                &[MemOut, SizeOrZero, AnyAddr],
                Ret::Integer,
            ),
            113 => p(
                "bpf_probe_read_kernel",
                &[MemOut, SizeOrZero, AnyAddr],
                Ret::Integer,
            ),
            114 => p(
                "bpf_probe_read_user_str",
                &[MemOut, SizeOrZero, AnyAddr],
                Ret::Integer,
            ),
            115 => p(
                "bpf_probe_read_kernel_str",
                &[MemOut, SizeOrZero, AnyAddr],
                Ret::Integer,
            ),
            125 => p("bpf_ktime_get_boot_ns", &[], Ret::Integer),
            130 => p(
                "bpf_ringbuf_output",
                &[Map(MapClass::RingBuf), MemIn, SizeOrZero, Scalar],
                Ret::Integer,
            ),
            131 => p(
                "bpf_ringbuf_reserve",
                &[Map(MapClass::RingBuf), AllocSize, Scalar],
                Ret::RingbufMemOrNull,
            ),
            132 => p("bpf_ringbuf_submit", &[RingbufMem, Scalar], Ret::Void),
            133 => p("bpf_ringbuf_discard", &[RingbufMem, Scalar], Ret::Void),
            134 => p(
                "bpf_ringbuf_query",
                &[Map(MapClass::RingBuf), Scalar],
                Ret::Integer,
            ),
            164 => Some(HelperProto {
                callback: Callback::ForEachMapElem,
                ..HelperProto::new(
                    "bpf_for_each_map_elem",
                    &[keyed, Func, Anything, Scalar],
                    Ret::Integer,
                )
            }),
            165 => p(
                "bpf_snprintf",
                &[MemOut, SizeOrZero, ConstStr, MemInOrNull, SizeOrZero],
                Ret::Integer,
            ),
            181 => Some(HelperProto {
                callback: Callback::Loop,
                ..HelperProto::new("bpf_loop", &[Scalar, Func, Anything, Scalar], Ret::Integer)
            }),
            _ => HelperProto::kernel_only(id),
        }
    }

    /// Prototypes of kernel helpers moat verifies but does not run (a program using one verifies,
    /// then fails to load with "unknown helper"): enough for real-world objects to be judged.
    fn kernel_only(id: u32) -> Option<HelperProto> {
        use Arg::*;
        let p = |name, args: &[Arg], ret| Some(HelperProto::new(name, args, ret));
        let any = Map(MapClass::Any);
        match id {
            9 => p(
                "bpf_skb_store_bytes",
                &[Ctx, Scalar, MemIn, Size, Scalar],
                Ret::Integer,
            ),
            10 => p(
                "bpf_l3_csum_replace",
                &[Ctx, Scalar, Scalar, Scalar, Scalar],
                Ret::Integer,
            ),
            11 => p(
                "bpf_l4_csum_replace",
                &[Ctx, Scalar, Scalar, Scalar, Scalar],
                Ret::Integer,
            ),
            13 => p("bpf_clone_redirect", &[Ctx, Scalar, Scalar], Ret::Integer),
            17 => p("bpf_get_cgroup_classid", &[Ctx], Ret::Integer),
            18 => p("bpf_skb_vlan_push", &[Ctx, Scalar, Scalar], Ret::Integer),
            19 => p("bpf_skb_vlan_pop", &[Ctx], Ret::Integer),
            20 => p(
                "bpf_skb_get_tunnel_key",
                &[Ctx, MemOut, Size, Scalar],
                Ret::Integer,
            ),
            21 => p(
                "bpf_skb_set_tunnel_key",
                &[Ctx, MemIn, Size, Scalar],
                Ret::Integer,
            ),
            22 => p("bpf_perf_event_read", &[any, Scalar], Ret::Integer),
            23 => p("bpf_redirect", &[Scalar, Scalar], Ret::Integer),
            24 => p("bpf_get_route_realm", &[Ctx], Ret::Integer),
            25 => p(
                "bpf_perf_event_output",
                &[Ctx, any, Scalar, MemIn, SizeOrZero],
                Ret::Integer,
            ),
            26 => p(
                "bpf_skb_load_bytes",
                &[Ctx, Scalar, MemOut, Size],
                Ret::Integer,
            ),
            27 => p("bpf_get_stackid", &[Ctx, any, Scalar], Ret::Integer),
            28 => p(
                "bpf_csum_diff",
                &[MemInOrNull, SizeOrZero, MemInOrNull, SizeOrZero, Scalar],
                Ret::Integer,
            ),
            29 => p("bpf_skb_get_tunnel_opt", &[Ctx, MemOut, Size], Ret::Integer),
            30 => p("bpf_skb_set_tunnel_opt", &[Ctx, MemIn, Size], Ret::Integer),
            31 => p("bpf_skb_change_proto", &[Ctx, Scalar, Scalar], Ret::Integer),
            32 => p("bpf_skb_change_type", &[Ctx, Scalar], Ret::Integer),
            33 => p("bpf_skb_under_cgroup", &[Ctx, any, Scalar], Ret::Integer),
            34 => p("bpf_get_hash_recalc", &[Ctx], Ret::Integer),
            35 => p("bpf_get_current_task", &[], Ret::Integer),
            36 => p(
                "bpf_probe_write_user",
                &[AnyAddr, MemIn, Size],
                Ret::Integer,
            ),
            37 => p(
                "bpf_current_task_under_cgroup",
                &[any, Scalar],
                Ret::Integer,
            ),
            38 => p("bpf_skb_change_tail", &[Ctx, Scalar, Scalar], Ret::Integer),
            39 => p("bpf_skb_pull_data", &[Ctx, Scalar], Ret::Integer),
            40 => p("bpf_csum_update", &[Ctx, Scalar], Ret::Integer),
            41 => p("bpf_set_hash_invalid", &[Ctx], Ret::Integer),
            42 => p("bpf_get_numa_node_id", &[], Ret::Integer),
            43 => p("bpf_skb_change_head", &[Ctx, Scalar, Scalar], Ret::Integer),
            44 => p("bpf_xdp_adjust_head", &[Ctx, Scalar], Ret::Integer),
            45 => p(
                "bpf_probe_read_str",
                &[MemOut, SizeOrZero, AnyAddr],
                Ret::Integer,
            ),
            46 => p("bpf_get_socket_cookie", &[Ctx], Ret::Integer),
            47 => p("bpf_get_socket_uid", &[Ctx], Ret::Integer),
            48 => p("bpf_set_hash", &[Ctx, Scalar], Ret::Integer),
            50 => p(
                "bpf_skb_adjust_room",
                &[Ctx, Scalar, Scalar, Scalar],
                Ret::Integer,
            ),
            51 => p("bpf_redirect_map", &[any, Scalar, Scalar], Ret::Integer),
            54 => p("bpf_xdp_adjust_meta", &[Ctx, Scalar], Ret::Integer),
            55 => p(
                "bpf_perf_event_read_value",
                &[any, Scalar, MemOut, Size],
                Ret::Integer,
            ),
            58 => p("bpf_override_return", &[Ctx, Scalar], Ret::Integer),
            65 => p("bpf_xdp_adjust_tail", &[Ctx, Scalar], Ret::Integer),
            67 => p(
                "bpf_get_stack",
                &[Ctx, MemOut, SizeOrZero, Scalar],
                Ret::Integer,
            ),
            68 => p(
                "bpf_skb_load_bytes_relative",
                &[Ctx, Scalar, MemOut, Size, Scalar],
                Ret::Integer,
            ),
            69 => p("bpf_fib_lookup", &[Ctx, MemOut, Size, Scalar], Ret::Integer),
            79 => p("bpf_skb_cgroup_id", &[Ctx], Ret::Integer),
            80 => p("bpf_get_current_cgroup_id", &[], Ret::Integer),
            118 => p("bpf_jiffies64", &[], Ret::Integer),
            83 => p("bpf_skb_ancestor_cgroup_id", &[Ctx, Scalar], Ret::Integer),
            97 => p("bpf_skb_ecn_set_ce", &[Ctx], Ret::Integer),
            122 => p("bpf_get_netns_cookie", &[Anything], Ret::Integer),
            155 => p("bpf_redirect_peer", &[Scalar, Scalar], Ret::Integer),
            152 => p(
                "bpf_redirect_neigh",
                &[Scalar, MemInOrNull, SizeOrZero, Scalar],
                Ret::Integer,
            ),
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

/// The kernel's complexity limit.
pub const DEFAULT_COMPLEXITY_LIMIT: u64 = 1_000_000;

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
        }
    }
}
