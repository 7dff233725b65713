/* Packet counter: counts packets and bytes per IP protocol in a hash map; non-IPv4 frames under key 0.
 * Returns XDP_PASS (2). */
#include "common.h"

struct counts {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct counts);
} counters SEC(".maps");

SEC("xdp")
int count_packets(struct xdp_md *ctx)
{
	struct iphdr *ip = parse_ipv4(ctx);
	__u32 proto = ip ? ip->protocol : 0;
	__u64 len = ctx->data_end - ctx->data;
	struct counts *c = bpf_map_lookup_elem(&counters, &proto);
	if (c) {
		__sync_fetch_and_add(&c->packets, 1);
		__sync_fetch_and_add(&c->bytes, len);
	} else {
		struct counts fresh = { .packets = 1, .bytes = len };
		bpf_map_update_elem(&counters, &proto, &fresh, BPF_NOEXIST);
	}
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
