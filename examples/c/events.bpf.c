/* Events through a ring buffer: one record per IPv4 packet (addresses, protocol, length); packets of
 * other kinds are counted as drops in an array. Returns XDP_PASS (2), or XDP_DROP (1) when the ring
 * buffer is full. */
#include "common.h"

struct event {
	__u32 saddr;
	__u32 daddr;
	__u32 len;
	__u8 protocol;
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} ignored SEC(".maps");

SEC("xdp")
int emit_events(struct xdp_md *ctx)
{
	struct iphdr *ip = parse_ipv4(ctx);
	if (!ip) {
		__u32 zero = 0;
		__u64 *n = bpf_map_lookup_elem(&ignored, &zero);
		if (n)
			__sync_fetch_and_add(n, 1);
		return XDP_PASS;
	}
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return XDP_DROP;
	e->saddr = ip->saddr;
	e->daddr = ip->daddr;
	e->len = bpf_ntohs(ip->tot_len);
	e->protocol = ip->protocol;
	e->pad[0] = e->pad[1] = e->pad[2] = 0;
	bpf_ringbuf_submit(e, 0);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
