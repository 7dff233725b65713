//! Program types (`enum bpf_prog_type`), attach types (`enum bpf_attach_type`) and the section
//! names libbpf gives them (its `section_defs` table).

kernel_enum! {
    /// A program type, `BPF_PROG_TYPE_*`, named as libbpf's `prog_type_name` names it.
    pub enum ProgType {
        Unspec = 0 => "unspec",
        SocketFilter = 1 => "socket_filter",
        Kprobe = 2 => "kprobe",
        SchedCls = 3 => "sched_cls",
        SchedAct = 4 => "sched_act",
        Tracepoint = 5 => "tracepoint",
        Xdp = 6 => "xdp",
        PerfEvent = 7 => "perf_event",
        CgroupSkb = 8 => "cgroup_skb",
        CgroupSock = 9 => "cgroup_sock",
        LwtIn = 10 => "lwt_in",
        LwtOut = 11 => "lwt_out",
        LwtXmit = 12 => "lwt_xmit",
        SockOps = 13 => "sock_ops",
        SkSkb = 14 => "sk_skb",
        CgroupDevice = 15 => "cgroup_device",
        SkMsg = 16 => "sk_msg",
        RawTracepoint = 17 => "raw_tracepoint",
        CgroupSockAddr = 18 => "cgroup_sock_addr",
        LwtSeg6local = 19 => "lwt_seg6local",
        LircMode2 = 20 => "lirc_mode2",
        SkReuseport = 21 => "sk_reuseport",
        FlowDissector = 22 => "flow_dissector",
        CgroupSysctl = 23 => "cgroup_sysctl",
        RawTracepointWritable = 24 => "raw_tracepoint_writable",
        CgroupSockopt = 25 => "cgroup_sockopt",
        Tracing = 26 => "tracing",
        StructOps = 27 => "struct_ops",
        Ext = 28 => "ext",
        Lsm = 29 => "lsm",
        SkLookup = 30 => "sk_lookup",
        Syscall = 31 => "syscall",
        Netfilter = 32 => "netfilter",
    }
}

kernel_enum! {
    /// An attach type, `BPF_*` of `enum bpf_attach_type` (a program's `expected_attach_type`),
    /// named as libbpf's `attach_type_name` names it.
    pub enum AttachType {
        CgroupInetIngress = 0 => "cgroup_inet_ingress",
        CgroupInetEgress = 1 => "cgroup_inet_egress",
        CgroupInetSockCreate = 2 => "cgroup_inet_sock_create",
        CgroupSockOps = 3 => "cgroup_sock_ops",
        SkSkbStreamParser = 4 => "sk_skb_stream_parser",
        SkSkbStreamVerdict = 5 => "sk_skb_stream_verdict",
        CgroupDevice = 6 => "cgroup_device",
        SkMsgVerdict = 7 => "sk_msg_verdict",
        CgroupInet4Bind = 8 => "cgroup_inet4_bind",
        CgroupInet6Bind = 9 => "cgroup_inet6_bind",
        CgroupInet4Connect = 10 => "cgroup_inet4_connect",
        CgroupInet6Connect = 11 => "cgroup_inet6_connect",
        CgroupInet4PostBind = 12 => "cgroup_inet4_post_bind",
        CgroupInet6PostBind = 13 => "cgroup_inet6_post_bind",
        CgroupUdp4Sendmsg = 14 => "cgroup_udp4_sendmsg",
        CgroupUdp6Sendmsg = 15 => "cgroup_udp6_sendmsg",
        LircMode2 = 16 => "lirc_mode2",
        FlowDissector = 17 => "flow_dissector",
        CgroupSysctl = 18 => "cgroup_sysctl",
        CgroupUdp4Recvmsg = 19 => "cgroup_udp4_recvmsg",
        CgroupUdp6Recvmsg = 20 => "cgroup_udp6_recvmsg",
        CgroupGetsockopt = 21 => "cgroup_getsockopt",
        CgroupSetsockopt = 22 => "cgroup_setsockopt",
        TraceRawTp = 23 => "trace_raw_tp",
        TraceFentry = 24 => "trace_fentry",
        TraceFexit = 25 => "trace_fexit",
        ModifyReturn = 26 => "modify_return",
        LsmMac = 27 => "lsm_mac",
        TraceIter = 28 => "trace_iter",
        CgroupInet4Getpeername = 29 => "cgroup_inet4_getpeername",
        CgroupInet6Getpeername = 30 => "cgroup_inet6_getpeername",
        CgroupInet4Getsockname = 31 => "cgroup_inet4_getsockname",
        CgroupInet6Getsockname = 32 => "cgroup_inet6_getsockname",
        XdpDevmap = 33 => "xdp_devmap",
        CgroupInetSockRelease = 34 => "cgroup_inet_sock_release",
        XdpCpumap = 35 => "xdp_cpumap",
        SkLookup = 36 => "sk_lookup",
        Xdp = 37 => "xdp",
        SkSkbVerdict = 38 => "sk_skb_verdict",
        SkReuseportSelect = 39 => "sk_reuseport_select",
        SkReuseportSelectOrMigrate = 40 => "sk_reuseport_select_or_migrate",
        PerfEvent = 41 => "perf_event",
        TraceKprobeMulti = 42 => "trace_kprobe_multi",
        LsmCgroup = 43 => "lsm_cgroup",
        StructOps = 44 => "struct_ops",
        Netfilter = 45 => "netfilter",
        TcxIngress = 46 => "tcx_ingress",
        TcxEgress = 47 => "tcx_egress",
        TraceUprobeMulti = 48 => "trace_uprobe_multi",
        CgroupUnixConnect = 49 => "cgroup_unix_connect",
        CgroupUnixSendmsg = 50 => "cgroup_unix_sendmsg",
        CgroupUnixRecvmsg = 51 => "cgroup_unix_recvmsg",
        CgroupUnixGetpeername = 52 => "cgroup_unix_getpeername",
        CgroupUnixGetsockname = 53 => "cgroup_unix_getsockname",
        NetkitPrimary = 54 => "netkit_primary",
        NetkitPeer = 55 => "netkit_peer",
    }
}

impl ProgType {
    /// The values a program of this type may return from its main function, as the kernel's
    /// `check_return_code` enforces them for the types moat verifies (`None`: any value). cgroup skb
    /// programs return 0 (drop) or 1 (pass); egress ones may add congestion notification (2, 3).
    /// `sock_ops`, `cgroup_sock`, `cgroup_device` and `cgroup_sysctl` programs return 0 or 1 as
    /// well (the kernel's default range);
    /// `cgroup_sock_addr` ones too, except `recvmsg`, `getpeername` and `getsockname` hooks (1 only)
    /// and `bind` hooks (0 to 3: bit 1 asks the kernel to skip its port checks).
    pub fn return_range(self, attach_type: Option<AttachType>) -> Option<(u64, u64)> {
        match (self, attach_type) {
            (ProgType::CgroupSkb, Some(AttachType::CgroupInetEgress)) => Some((0, 3)),
            (
                ProgType::CgroupSkb
                | ProgType::SockOps
                | ProgType::CgroupSock
                | ProgType::CgroupDevice
                | ProgType::CgroupSysctl,
                _,
            ) => Some((0, 1)),
            (
                ProgType::CgroupSockAddr,
                Some(
                    AttachType::CgroupUdp4Recvmsg
                    | AttachType::CgroupUdp6Recvmsg
                    | AttachType::CgroupUnixRecvmsg
                    | AttachType::CgroupInet4Getpeername
                    | AttachType::CgroupInet6Getpeername
                    | AttachType::CgroupUnixGetpeername
                    | AttachType::CgroupInet4Getsockname
                    | AttachType::CgroupInet6Getsockname
                    | AttachType::CgroupUnixGetsockname,
                ),
            ) => Some((1, 1)),
            (
                ProgType::CgroupSockAddr,
                Some(AttachType::CgroupInet4Bind | AttachType::CgroupInet6Bind),
            ) => Some((0, 3)),
            (ProgType::CgroupSockAddr, _) => Some((0, 1)),
            _ => None,
        }
    }
}

/// One row of libbpf's `section_defs`: the section names starting with `prefix` hold programs of
/// this type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionDef {
    /// The name's start, as libbpf writes it without its `+` (`"kprobe"`, `"cgroup/skb"`).
    pub prefix: &'static str,
    /// The program type.
    pub prog_type: ProgType,
    /// The `expected_attach_type` libbpf loads it with; `None` where libbpf passes 0 for "none".
    pub attach_type: Option<AttachType>,
}

const fn def(
    prefix: &'static str,
    prog_type: ProgType,
    attach_type: Option<AttachType>,
) -> SectionDef {
    SectionDef {
        prefix,
        prog_type,
        attach_type,
    }
}

/// libbpf's `section_defs` (libbpf 1.5), in its order.
pub const SECTION_DEFS: &[SectionDef] = {
    use AttachType as A;
    use ProgType as P;
    &[
        def("socket", P::SocketFilter, None),
        def(
            "sk_reuseport/migrate",
            P::SkReuseport,
            Some(A::SkReuseportSelectOrMigrate),
        ),
        def("sk_reuseport", P::SkReuseport, Some(A::SkReuseportSelect)),
        def("kprobe", P::Kprobe, None),
        def("uprobe", P::Kprobe, None),
        def("uprobe.s", P::Kprobe, None),
        def("kretprobe", P::Kprobe, None),
        def("uretprobe", P::Kprobe, None),
        def("uretprobe.s", P::Kprobe, None),
        def("kprobe.multi", P::Kprobe, Some(A::TraceKprobeMulti)),
        def("kretprobe.multi", P::Kprobe, Some(A::TraceKprobeMulti)),
        def("uprobe.multi", P::Kprobe, Some(A::TraceUprobeMulti)),
        def("uretprobe.multi", P::Kprobe, Some(A::TraceUprobeMulti)),
        def("uprobe.multi.s", P::Kprobe, Some(A::TraceUprobeMulti)),
        def("uretprobe.multi.s", P::Kprobe, Some(A::TraceUprobeMulti)),
        def("ksyscall", P::Kprobe, None),
        def("kretsyscall", P::Kprobe, None),
        def("usdt", P::Kprobe, None),
        def("usdt.s", P::Kprobe, None),
        def("tc/ingress", P::SchedCls, Some(A::TcxIngress)),
        def("tc/egress", P::SchedCls, Some(A::TcxEgress)),
        def("tcx/ingress", P::SchedCls, Some(A::TcxIngress)),
        def("tcx/egress", P::SchedCls, Some(A::TcxEgress)),
        def("tc", P::SchedCls, None),
        def("classifier", P::SchedCls, None),
        def("action", P::SchedAct, None),
        def("netkit/primary", P::SchedCls, Some(A::NetkitPrimary)),
        def("netkit/peer", P::SchedCls, Some(A::NetkitPeer)),
        def("tracepoint", P::Tracepoint, None),
        def("tp", P::Tracepoint, None),
        def("raw_tracepoint", P::RawTracepoint, None),
        def("raw_tp", P::RawTracepoint, None),
        def("raw_tracepoint.w", P::RawTracepointWritable, None),
        def("raw_tp.w", P::RawTracepointWritable, None),
        def("tp_btf", P::Tracing, Some(A::TraceRawTp)),
        def("fentry", P::Tracing, Some(A::TraceFentry)),
        def("fmod_ret", P::Tracing, Some(A::ModifyReturn)),
        def("fexit", P::Tracing, Some(A::TraceFexit)),
        def("fentry.s", P::Tracing, Some(A::TraceFentry)),
        def("fmod_ret.s", P::Tracing, Some(A::ModifyReturn)),
        def("fexit.s", P::Tracing, Some(A::TraceFexit)),
        def("freplace", P::Ext, None),
        def("lsm", P::Lsm, Some(A::LsmMac)),
        def("lsm.s", P::Lsm, Some(A::LsmMac)),
        def("lsm_cgroup", P::Lsm, Some(A::LsmCgroup)),
        def("iter", P::Tracing, Some(A::TraceIter)),
        def("iter.s", P::Tracing, Some(A::TraceIter)),
        def("syscall", P::Syscall, None),
        def("xdp.frags/devmap", P::Xdp, Some(A::XdpDevmap)),
        def("xdp/devmap", P::Xdp, Some(A::XdpDevmap)),
        def("xdp.frags/cpumap", P::Xdp, Some(A::XdpCpumap)),
        def("xdp/cpumap", P::Xdp, Some(A::XdpCpumap)),
        def("xdp.frags", P::Xdp, Some(A::Xdp)),
        def("xdp", P::Xdp, Some(A::Xdp)),
        def("perf_event", P::PerfEvent, None),
        def("lwt_in", P::LwtIn, None),
        def("lwt_out", P::LwtOut, None),
        def("lwt_xmit", P::LwtXmit, None),
        def("lwt_seg6local", P::LwtSeg6local, None),
        def("sockops", P::SockOps, Some(A::CgroupSockOps)),
        def("sk_skb/stream_parser", P::SkSkb, Some(A::SkSkbStreamParser)),
        def(
            "sk_skb/stream_verdict",
            P::SkSkb,
            Some(A::SkSkbStreamVerdict),
        ),
        def("sk_skb", P::SkSkb, None),
        def("sk_msg", P::SkMsg, Some(A::SkMsgVerdict)),
        def("lirc_mode2", P::LircMode2, Some(A::LircMode2)),
        def("flow_dissector", P::FlowDissector, Some(A::FlowDissector)),
        def(
            "cgroup_skb/ingress",
            P::CgroupSkb,
            Some(A::CgroupInetIngress),
        ),
        def("cgroup_skb/egress", P::CgroupSkb, Some(A::CgroupInetEgress)),
        def("cgroup/skb", P::CgroupSkb, None),
        def(
            "cgroup/sock_create",
            P::CgroupSock,
            Some(A::CgroupInetSockCreate),
        ),
        def(
            "cgroup/sock_release",
            P::CgroupSock,
            Some(A::CgroupInetSockRelease),
        ),
        def("cgroup/sock", P::CgroupSock, Some(A::CgroupInetSockCreate)),
        def(
            "cgroup/post_bind4",
            P::CgroupSock,
            Some(A::CgroupInet4PostBind),
        ),
        def(
            "cgroup/post_bind6",
            P::CgroupSock,
            Some(A::CgroupInet6PostBind),
        ),
        def("cgroup/bind4", P::CgroupSockAddr, Some(A::CgroupInet4Bind)),
        def("cgroup/bind6", P::CgroupSockAddr, Some(A::CgroupInet6Bind)),
        def(
            "cgroup/connect4",
            P::CgroupSockAddr,
            Some(A::CgroupInet4Connect),
        ),
        def(
            "cgroup/connect6",
            P::CgroupSockAddr,
            Some(A::CgroupInet6Connect),
        ),
        def(
            "cgroup/connect_unix",
            P::CgroupSockAddr,
            Some(A::CgroupUnixConnect),
        ),
        def(
            "cgroup/sendmsg4",
            P::CgroupSockAddr,
            Some(A::CgroupUdp4Sendmsg),
        ),
        def(
            "cgroup/sendmsg6",
            P::CgroupSockAddr,
            Some(A::CgroupUdp6Sendmsg),
        ),
        def(
            "cgroup/sendmsg_unix",
            P::CgroupSockAddr,
            Some(A::CgroupUnixSendmsg),
        ),
        def(
            "cgroup/recvmsg4",
            P::CgroupSockAddr,
            Some(A::CgroupUdp4Recvmsg),
        ),
        def(
            "cgroup/recvmsg6",
            P::CgroupSockAddr,
            Some(A::CgroupUdp6Recvmsg),
        ),
        def(
            "cgroup/recvmsg_unix",
            P::CgroupSockAddr,
            Some(A::CgroupUnixRecvmsg),
        ),
        def(
            "cgroup/getpeername4",
            P::CgroupSockAddr,
            Some(A::CgroupInet4Getpeername),
        ),
        def(
            "cgroup/getpeername6",
            P::CgroupSockAddr,
            Some(A::CgroupInet6Getpeername),
        ),
        def(
            "cgroup/getpeername_unix",
            P::CgroupSockAddr,
            Some(A::CgroupUnixGetpeername),
        ),
        def(
            "cgroup/getsockname4",
            P::CgroupSockAddr,
            Some(A::CgroupInet4Getsockname),
        ),
        def(
            "cgroup/getsockname6",
            P::CgroupSockAddr,
            Some(A::CgroupInet6Getsockname),
        ),
        def(
            "cgroup/getsockname_unix",
            P::CgroupSockAddr,
            Some(A::CgroupUnixGetsockname),
        ),
        def("cgroup/sysctl", P::CgroupSysctl, Some(A::CgroupSysctl)),
        def(
            "cgroup/getsockopt",
            P::CgroupSockopt,
            Some(A::CgroupGetsockopt),
        ),
        def(
            "cgroup/setsockopt",
            P::CgroupSockopt,
            Some(A::CgroupSetsockopt),
        ),
        def("cgroup/dev", P::CgroupDevice, Some(A::CgroupDevice)),
        def("struct_ops", P::StructOps, None),
        def("struct_ops.s", P::StructOps, None),
        def("sk_lookup", P::SkLookup, Some(A::SkLookup)),
        def("netfilter", P::Netfilter, Some(A::Netfilter)),
    ]
};

/// The row of [`SECTION_DEFS`] for section `name`: the one with the longest prefix of `name`.
///
/// Matching is by prefix alone, as libbpf's legacy mode and the kernel samples' loader did
/// (`socket1`, `xdp_prog`, `kprobe/sys_write`, `tp/syscalls/...`), not libbpf 1.0's strict `+`
/// rules; the longest prefix wins, so `tp_btf/x` is `tp_btf`'s, not `tp`'s. `None` where no name
/// fits (`2/7`, `.text`, `maps`).
pub fn section_def(name: &str) -> Option<&'static SectionDef> {
    SECTION_DEFS
        .iter()
        .filter(|d| name.starts_with(d.prefix))
        .max_by_key(|d| d.prefix.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_and_is_unique() {
        crate::check_table(
            ProgType::ALL,
            ProgType::as_u32,
            ProgType::from_u32,
            ProgType::name,
            ProgType::from_name,
        );
        crate::check_table(
            AttachType::ALL,
            AttachType::as_u32,
            AttachType::from_u32,
            AttachType::name,
            AttachType::from_name,
        );
        assert_eq!(ProgType::ALL.len(), 33);
        assert_eq!(AttachType::ALL.len(), 56);
    }

    #[test]
    fn known_numbers() {
        assert_eq!(ProgType::SocketFilter.as_u32(), 1);
        assert_eq!(ProgType::SchedCls.as_u32(), 3);
        assert_eq!(ProgType::Xdp.as_u32(), 6);
        assert_eq!(ProgType::Tracing.as_u32(), 26);
        assert_eq!(ProgType::Syscall.as_u32(), 31);
        assert_eq!(ProgType::from_name("cgroup_skb"), Some(ProgType::CgroupSkb));
        assert_eq!(AttachType::TraceFentry.as_u32(), 24);
        assert_eq!(AttachType::Xdp.as_u32(), 37);
        assert_eq!(AttachType::NetkitPeer.as_u32(), 55);
    }

    #[test]
    fn section_prefixes_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for d in SECTION_DEFS {
            assert!(seen.insert(d.prefix), "{} twice", d.prefix);
        }
    }

    #[test]
    fn sections_find_their_types() {
        let kind = |name| section_def(name).map(|d| (d.prog_type, d.attach_type));
        use AttachType as A;
        use ProgType as P;
        assert_eq!(kind("xdp"), Some((P::Xdp, Some(A::Xdp))));
        assert_eq!(kind("xdp_prog"), Some((P::Xdp, Some(A::Xdp))));
        assert_eq!(kind("xdp/devmap"), Some((P::Xdp, Some(A::XdpDevmap))));
        assert_eq!(kind("socket1"), Some((P::SocketFilter, None)));
        assert_eq!(kind("kprobe/sys_write"), Some((P::Kprobe, None)));
        assert_eq!(
            kind("kprobe.multi/x"),
            Some((P::Kprobe, Some(A::TraceKprobeMulti)))
        );
        assert_eq!(kind("tp/syscalls/sys_enter"), Some((P::Tracepoint, None)));
        assert_eq!(
            kind("tp_btf/sched_switch"),
            Some((P::Tracing, Some(A::TraceRawTp)))
        );
        assert_eq!(kind("raw_tp.w/x"), Some((P::RawTracepointWritable, None)));
        assert_eq!(
            kind("fmod_ret/x"),
            Some((P::Tracing, Some(A::ModifyReturn)))
        );
        assert_eq!(kind("action"), Some((P::SchedAct, None)));
        assert_eq!(
            kind("tcx/ingress"),
            Some((P::SchedCls, Some(A::TcxIngress)))
        );
        assert_eq!(
            kind("cgroup_skb/egress"),
            Some((P::CgroupSkb, Some(A::CgroupInetEgress)))
        );
        assert_eq!(
            kind("cgroup/sock_release"),
            Some((P::CgroupSock, Some(A::CgroupInetSockRelease)))
        );
        assert_eq!(kind("2/7"), None);
        assert_eq!(kind(".text"), None);
        assert_eq!(kind("maps"), None);
    }

    #[test]
    fn return_ranges_follow_check_return_code() {
        use AttachType as A;
        use ProgType as P;
        let range = |t: P, a| t.return_range(a);
        assert_eq!(range(P::CgroupSkb, Some(A::CgroupInetEgress)), Some((0, 3)));
        assert_eq!(range(P::CgroupSkb, None), Some((0, 1)));
        assert_eq!(range(P::SockOps, Some(A::CgroupSockOps)), Some((0, 1)));
        assert_eq!(range(P::CgroupSock, None), Some((0, 1)));
        assert_eq!(
            range(P::CgroupSockAddr, Some(A::CgroupInet4Connect)),
            Some((0, 1))
        );
        assert_eq!(
            range(P::CgroupSockAddr, Some(A::CgroupUdp6Recvmsg)),
            Some((1, 1))
        );
        assert_eq!(
            range(P::CgroupSockAddr, Some(A::CgroupInet6Bind)),
            Some((0, 3))
        );
        assert_eq!(range(P::CgroupDevice, None), Some((0, 1)));
        assert_eq!(range(P::CgroupSysctl, None), Some((0, 1)));
        assert_eq!(range(P::Xdp, None), None);
    }
}
