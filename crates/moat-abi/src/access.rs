//! Which helpers the kernel lets each program type call, and which only from GPL-compatible
//! programs (`gpl_only`): what `BPF_PROG_LOAD` answered, helper by helper, on Linux 6.18.44 for a
//! privileged (root) loader. The answer depends on the kernel's version, its configuration
//! (`bpf_override_return` needs `CONFIG_BPF_KPROBE_OVERRIDE`; lockdown removes
//! `bpf_probe_write_user`) and the loader's capabilities; `moat-kernel`'s `helper_table` test asks
//! the running kernel again and prints the rows that differ.

use crate::{HelperId, ProgType};

/// What a program type may do with a helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelperAccess {
    /// The kernel does not offer the helper to the type ("program of this type cannot use
    /// helper", or no such function).
    Unavailable,
    /// Any program of the type may call it.
    Allowed,
    /// Only programs whose license is GPL-compatible may call it ([`license_is_gpl_compatible`]).
    GplOnly,
}

impl HelperAccess {
    /// The table's letter for it: `-`, `a` or `G`.
    pub fn letter(self) -> char {
        match self {
            HelperAccess::Unavailable => '-',
            HelperAccess::Allowed => 'a',
            HelperAccess::GplOnly => 'G',
        }
    }
}

/// The kernel release the table was recorded on (`uname -r`).
pub const HELPER_TABLE_KERNEL: &str = "6.18.44-fc-v1147";

/// The program types the table has a column for, in column order.
pub const HELPER_TABLE_TYPES: [ProgType; 8] = [
    ProgType::Kprobe,
    ProgType::Tracepoint,
    ProgType::RawTracepoint,
    ProgType::PerfEvent,
    ProgType::SocketFilter,
    ProgType::SchedCls,
    ProgType::Xdp,
    ProgType::CgroupSkb,
];

/// Row `id - 1`, one letter per column of [`HELPER_TABLE_TYPES`] ([`HelperAccess::letter`]).
const TABLE: [&str; 211] = [
    "aaaaaaaa", // 1 bpf_map_lookup_elem
    "aaaaaaaa", // 2 bpf_map_update_elem
    "aaaaaaaa", // 3 bpf_map_delete_elem
    "GGGG----", // 4 bpf_probe_read
    "aaaaaaaa", // 5 bpf_ktime_get_ns
    "GGGGGGGG", // 6 bpf_trace_printk
    "aaaaaaaa", // 7 bpf_get_prandom_u32
    "aaaaaaaa", // 8 bpf_get_smp_processor_id
    "-----a--", // 9 bpf_skb_store_bytes
    "-----a--", // 10 bpf_l3_csum_replace
    "-----a--", // 11 bpf_l4_csum_replace
    "aaaaaaaa", // 12 bpf_tail_call
    "-----a--", // 13 bpf_clone_redirect
    "aaaaaaaa", // 14 bpf_get_current_pid_tgid
    "aaaaaaaa", // 15 bpf_get_current_uid_gid
    "aaaaaaaa", // 16 bpf_get_current_comm
    "aaaaaaaa", // 17 bpf_get_cgroup_classid
    "-----a--", // 18 bpf_skb_vlan_push
    "-----a--", // 19 bpf_skb_vlan_pop
    "-----a--", // 20 bpf_skb_get_tunnel_key
    "-----a--", // 21 bpf_skb_set_tunnel_key
    "GGGGGGGG", // 22 bpf_perf_event_read
    "-----aa-", // 23 bpf_redirect
    "-----a--", // 24 bpf_get_route_realm
    "GGGGGGGG", // 25 bpf_perf_event_output
    "----aa-a", // 26 bpf_skb_load_bytes
    "GGGa----", // 27 bpf_get_stackid
    "-----aa-", // 28 bpf_csum_diff
    "-----a--", // 29 bpf_skb_get_tunnel_opt
    "-----a--", // 30 bpf_skb_set_tunnel_opt
    "-----a--", // 31 bpf_skb_change_proto
    "-----a--", // 32 bpf_skb_change_type
    "-----a--", // 33 bpf_skb_under_cgroup
    "-----a--", // 34 bpf_get_hash_recalc
    "GGGGGGGG", // 35 bpf_get_current_task
    "--------", // 36 bpf_probe_write_user
    "aaaaaaaa", // 37 bpf_current_task_under_cgroup
    "-----a--", // 38 bpf_skb_change_tail
    "-----a--", // 39 bpf_skb_pull_data
    "-----a--", // 40 bpf_csum_update
    "-----a--", // 41 bpf_set_hash_invalid
    "aaaaaaaa", // 42 bpf_get_numa_node_id
    "-----a--", // 43 bpf_skb_change_head
    "------a-", // 44 bpf_xdp_adjust_head
    "GGGG----", // 45 bpf_probe_read_str
    "----aa-a", // 46 bpf_get_socket_cookie
    "----aa-a", // 47 bpf_get_socket_uid
    "-----a--", // 48 bpf_set_hash
    "--------", // 49 bpf_setsockopt
    "-----a--", // 50 bpf_skb_adjust_room
    "------a-", // 51 bpf_redirect_map
    "--------", // 52 bpf_sk_redirect_map
    "--------", // 53 bpf_sock_map_update
    "------a-", // 54 bpf_xdp_adjust_meta
    "GGGGGGGG", // 55 bpf_perf_event_read_value
    "---G----", // 56 bpf_perf_prog_read_value
    "--------", // 57 bpf_getsockopt
    "--------", // 58 bpf_override_return
    "--------", // 59 bpf_sock_ops_cb_flags_set
    "--------", // 60 bpf_msg_redirect_map
    "--------", // 61 bpf_msg_apply_bytes
    "--------", // 62 bpf_msg_cork_bytes
    "--------", // 63 bpf_msg_pull_data
    "--------", // 64 bpf_bind
    "------a-", // 65 bpf_xdp_adjust_tail
    "-----a--", // 66 bpf_skb_get_xfrm_state
    "GGGG----", // 67 bpf_get_stack
    "----aa-a", // 68 bpf_skb_load_bytes_relative
    "-----GG-", // 69 bpf_fib_lookup
    "--------", // 70 bpf_sock_hash_update
    "--------", // 71 bpf_msg_redirect_hash
    "--------", // 72 bpf_sk_redirect_hash
    "--------", // 73 bpf_lwt_push_encap
    "--------", // 74 bpf_lwt_seg6_store_bytes
    "--------", // 75 bpf_lwt_seg6_adjust_srh
    "--------", // 76 bpf_lwt_seg6_action
    "--------", // 77 bpf_rc_repeat
    "--------", // 78 bpf_rc_keydown
    "-----a-a", // 79 bpf_skb_cgroup_id
    "aaaaaaaa", // 80 bpf_get_current_cgroup_id
    "-------a", // 81 bpf_get_local_storage
    "--------", // 82 bpf_sk_select_reuseport
    "-----a-a", // 83 bpf_skb_ancestor_cgroup_id
    "-----aaa", // 84 bpf_sk_lookup_tcp
    "-----aaa", // 85 bpf_sk_lookup_udp
    "-----aaa", // 86 bpf_sk_release
    "aaaaaaaa", // 87 bpf_map_push_elem
    "aaaaaaaa", // 88 bpf_map_pop_elem
    "aaaaaaaa", // 89 bpf_map_peek_elem
    "--------", // 90 bpf_msg_push_data
    "--------", // 91 bpf_msg_pop_data
    "--------", // 92 bpf_rc_pointer_rel
    "aaaaaaaa", // 93 bpf_spin_lock
    "aaaaaaaa", // 94 bpf_spin_unlock
    "-----a-a", // 95 bpf_sk_fullsock
    "-----a-a", // 96 bpf_tcp_sock
    "-----a-a", // 97 bpf_skb_ecn_set_ce
    "-----a-a", // 98 bpf_get_listener_sock
    "-----aaa", // 99 bpf_skc_lookup_tcp
    "-----GG-", // 100 bpf_tcp_check_syncookie
    "--------", // 101 bpf_sysctl_get_name
    "--------", // 102 bpf_sysctl_get_current_value
    "--------", // 103 bpf_sysctl_get_new_value
    "--------", // 104 bpf_sysctl_set_new_value
    "aaaaaaaa", // 105 bpf_strtol
    "aaaaaaaa", // 106 bpf_strtoul
    "-----a-a", // 107 bpf_sk_storage_get
    "-----a-a", // 108 bpf_sk_storage_delete
    "aaaaaaaa", // 109 bpf_send_signal
    "-----GG-", // 110 bpf_tcp_gen_syncookie
    "--------", // 111 bpf_skb_output
    "GGGGGGGG", // 112 bpf_probe_read_user
    "GGGGGGGG", // 113 bpf_probe_read_kernel
    "GGGGGGGG", // 114 bpf_probe_read_user_str
    "GGGGGGGG", // 115 bpf_probe_read_kernel_str
    "--------", // 116 bpf_tcp_send_ack
    "aaaaaaaa", // 117 bpf_send_signal_thread
    "aaaaaaaa", // 118 bpf_jiffies64
    "---G----", // 119 bpf_read_branch_records
    "aaaaaaaa", // 120 bpf_get_ns_current_pid_tgid
    "--------", // 121 bpf_xdp_output
    "----aa-a", // 122 bpf_get_netns_cookie
    "aaaaaaaa", // 123 bpf_get_current_ancestor_cgroup_id
    "-----a--", // 124 bpf_sk_assign
    "aaaaaaaa", // 125 bpf_ktime_get_boot_ns
    "--------", // 126 bpf_seq_printf
    "--------", // 127 bpf_seq_write
    "-------a", // 128 bpf_sk_cgroup_id
    "-------a", // 129 bpf_sk_ancestor_cgroup_id
    "aaaaaaaa", // 130 bpf_ringbuf_output
    "aaaaaaaa", // 131 bpf_ringbuf_reserve
    "aaaaaaaa", // 132 bpf_ringbuf_submit
    "aaaaaaaa", // 133 bpf_ringbuf_discard
    "aaaaaaaa", // 134 bpf_ringbuf_query
    "-----a--", // 135 bpf_csum_level
    "----aaaa", // 136 bpf_skc_to_tcp6_sock
    "----aaaa", // 137 bpf_skc_to_tcp_sock
    "----aaaa", // 138 bpf_skc_to_tcp_timewait_sock
    "----aaaa", // 139 bpf_skc_to_tcp_request_sock
    "----aaaa", // 140 bpf_skc_to_udp6_sock
    "aaaaaaaa", // 141 bpf_get_task_stack
    "--------", // 142 bpf_load_hdr_opt
    "--------", // 143 bpf_store_hdr_opt
    "--------", // 144 bpf_reserve_hdr_opt
    "--------", // 145 bpf_inode_storage_get
    "--------", // 146 bpf_inode_storage_delete
    "--------", // 147 bpf_d_path
    "aaaaaaaa", // 148 bpf_copy_from_user
    "aaaaaaaa", // 149 bpf_snprintf_btf
    "--------", // 150 bpf_seq_printf_btf
    "-----a--", // 151 bpf_skb_cgroup_classid
    "-----a--", // 152 bpf_redirect_neigh
    "aaaaaaaa", // 153 bpf_per_cpu_ptr
    "aaaaaaaa", // 154 bpf_this_cpu_ptr
    "-----a--", // 155 bpf_redirect_peer
    "aaaaaaaa", // 156 bpf_task_storage_get
    "aaaaaaaa", // 157 bpf_task_storage_delete
    "GGGGGGGG", // 158 bpf_get_current_task_btf
    "--------", // 159 bpf_bprm_opts_set
    "----aaaa", // 160 bpf_ktime_get_coarse_ns
    "--------", // 161 bpf_ima_inode_hash
    "--------", // 162 bpf_sock_from_file
    "-----GG-", // 163 bpf_check_mtu
    "aaaaaaaa", // 164 bpf_for_each_map_elem
    "GGGGGGGG", // 165 bpf_snprintf
    "--------", // 166 bpf_sys_bpf
    "--------", // 167 bpf_btf_find_by_name_kind
    "--------", // 168 bpf_sys_close
    "GGGGGGGG", // 169 bpf_timer_init
    "GGGGGGGG", // 170 bpf_timer_set_callback
    "GGGGGGGG", // 171 bpf_timer_start
    "GGGGGGGG", // 172 bpf_timer_cancel
    "GGGG----", // 173 bpf_get_func_ip
    "aaaa----", // 174 bpf_get_attach_cookie
    "GGGGGGGG", // 175 bpf_task_pt_regs
    "GGGGGGGG", // 176 bpf_get_branch_snapshot
    "GGGGGGGG", // 177 bpf_trace_vprintk
    "----aaaa", // 178 bpf_skc_to_unix_sock
    "--------", // 179 bpf_kallsyms_lookup_name
    "aaaaaaaa", // 180 bpf_find_vma
    "aaaaaaaa", // 181 bpf_loop
    "aaaaaaaa", // 182 bpf_strncmp
    "--------", // 183 bpf_get_func_arg
    "--------", // 184 bpf_get_func_ret
    "--------", // 185 bpf_get_func_arg_cnt
    "--------", // 186 bpf_get_retval
    "--------", // 187 bpf_set_retval
    "------a-", // 188 bpf_xdp_get_buff_len
    "------a-", // 189 bpf_xdp_load_bytes
    "------a-", // 190 bpf_xdp_store_bytes
    "GGGGGGGG", // 191 bpf_copy_from_user_task
    "-----a--", // 192 bpf_skb_set_tstamp
    "--------", // 193 bpf_ima_file_hash
    "aaaaaaaa", // 194 bpf_kptr_xchg
    "aaaaaaaa", // 195 bpf_map_lookup_percpu_elem
    "----aaaa", // 196 bpf_skc_to_mptcp_sock
    "aaaaaaaa", // 197 bpf_dynptr_from_mem
    "aaaaaaaa", // 198 bpf_ringbuf_reserve_dynptr
    "aaaaaaaa", // 199 bpf_ringbuf_submit_dynptr
    "aaaaaaaa", // 200 bpf_ringbuf_discard_dynptr
    "aaaaaaaa", // 201 bpf_dynptr_read
    "aaaaaaaa", // 202 bpf_dynptr_write
    "aaaaaaaa", // 203 bpf_dynptr_data
    "-----GG-", // 204 bpf_tcp_raw_gen_syncookie_ipv4
    "-----GG-", // 205 bpf_tcp_raw_gen_syncookie_ipv6
    "-----GG-", // 206 bpf_tcp_raw_check_syncookie_ipv4
    "-----GG-", // 207 bpf_tcp_raw_check_syncookie_ipv6
    "aaaaaaaa", // 208 bpf_ktime_get_tai_ns
    "aaaaaaaa", // 209 bpf_user_ringbuf_drain
    "aaaaaaaa", // 210 bpf_cgrp_storage_get
    "aaaaaaaa", // 211 bpf_cgrp_storage_delete
];

impl HelperId {
    /// What programs of `prog_type` may do with this helper, as the kernel answered; `None` for a
    /// type the table has no column for.
    pub fn access(self, prog_type: ProgType) -> Option<HelperAccess> {
        let column = HELPER_TABLE_TYPES.iter().position(|t| *t == prog_type)?;
        let row = TABLE.get(self.as_u32().checked_sub(1)? as usize)?;
        Some(match row.as_bytes().get(column)? {
            b'a' => HelperAccess::Allowed,
            b'G' => HelperAccess::GplOnly,
            _ => HelperAccess::Unavailable,
        })
    }
}

impl HelperId {
    /// Whether the kernel offers the helper only to a loader with `CAP_PERFMON` (the part of
    /// `bpf_base_func_proto` in `kernel/bpf/helpers.c` after its `CAP_PERFMON` check): a loader
    /// with `CAP_BPF` alone (moat's unprivileged rules) gets "unknown func" for these, whatever
    /// [`HelperId::access`] says for root.
    pub fn needs_perfmon(self) -> bool {
        use HelperId as H;
        matches!(
            self,
            H::TracePrintk
                | H::GetCurrentTask
                | H::GetCurrentTaskBtf
                | H::ProbeReadUser
                | H::ProbeReadKernel
                | H::ProbeReadUserStr
                | H::ProbeReadKernelStr
                | H::SnprintfBtf
                | H::Snprintf
                | H::TaskPtRegs
                | H::TraceVprintk
        )
    }
}

impl HelperId {
    /// Whether a call may move or resize the packet, so that every packet pointer the program
    /// holds is invalid afterwards (`bpf_helper_changes_pkt_data` of the kernel's
    /// `net/core/filter.c`). A tail call that falls through does not count: the kernel (6.18)
    /// keeps packet pointers across it.
    pub fn changes_packet_data(self) -> bool {
        use HelperId as H;
        matches!(
            self,
            H::CloneRedirect
                | H::L3CsumReplace
                | H::L4CsumReplace
                | H::LwtPushEncap
                | H::LwtSeg6Action
                | H::LwtSeg6AdjustSrh
                | H::LwtSeg6StoreBytes
                | H::MsgPopData
                | H::MsgPullData
                | H::MsgPushData
                | H::SkbAdjustRoom
                | H::SkbChangeHead
                | H::SkbChangeProto
                | H::SkbChangeTail
                | H::SkbPullData
                | H::SkbStoreBytes
                | H::SkbVlanPop
                | H::SkbVlanPush
                | H::StoreHdrOpt
                | H::XdpAdjustHead
                | H::XdpAdjustMeta
                | H::XdpAdjustTail
        )
    }
}

/// Whether the kernel counts `license` as GPL-compatible (`license_is_gpl_compatible` of
/// `include/linux/license.h`): exactly one of its six strings.
pub fn license_is_gpl_compatible(license: &str) -> bool {
    matches!(
        license,
        "GPL"
            | "GPL v2"
            | "GPL and additional rights"
            | "Dual BSD/GPL"
            | "Dual MIT/GPL"
            | "Dual MPL/GPL"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_well_formed_row_per_helper() {
        for row in TABLE {
            assert_eq!(row.len(), HELPER_TABLE_TYPES.len(), "{row}");
            assert!(
                row.bytes().all(|c| matches!(c, b'-' | b'a' | b'G')),
                "{row}"
            );
        }
        assert_eq!(TABLE.len(), HelperId::ALL.len());
    }

    #[test]
    fn known_answers() {
        use HelperAccess::*;
        assert_eq!(HelperId::MapLookupElem.access(ProgType::Xdp), Some(Allowed));
        assert_eq!(
            HelperId::TracePrintk.access(ProgType::SchedCls),
            Some(GplOnly)
        );
        assert_eq!(
            HelperId::ProbeReadUser.access(ProgType::Kprobe),
            Some(GplOnly)
        );
        assert_eq!(HelperId::GetFuncIp.access(ProgType::Xdp), Some(Unavailable));
        assert_eq!(HelperId::MapLookupElem.access(ProgType::Lsm), None);
        assert!(license_is_gpl_compatible("Dual BSD/GPL"));
        assert!(!license_is_gpl_compatible("Proprietary"));
        assert!(!license_is_gpl_compatible("gpl"));
    }
}
