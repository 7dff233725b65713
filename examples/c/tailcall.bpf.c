/* Tail calls through a prog_array: a dispatcher jumps to a per-protocol handler (slot = IP protocol:
 * 6 TCP, 17 UDP); each handler returns its own verdict. Unknown protocols fall through to XDP_PASS. */
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 32);
	__type(key, __u32);
	__type(value, __u32);
} handlers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 32);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");

static __always_inline void mark(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&seen, &slot);
	if (n)
		__sync_fetch_and_add(n, 1);
}

SEC("xdp")
int handle_tcp(struct xdp_md *ctx)
{
	mark(6);
	return XDP_DROP;
}

SEC("xdp")
int handle_udp(struct xdp_md *ctx)
{
	mark(17);
	return XDP_TX;
}

SEC("xdp")
int dispatch(struct xdp_md *ctx)
{
	struct iphdr *ip = parse_ipv4(ctx);
	if (!ip)
		return XDP_PASS;
	mark(0);
	bpf_tail_call(ctx, &handlers, ip->protocol & 31);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
