/* An LPM routing lookup: the destination address of an IPv4 packet is looked up in a longest-prefix
 * trie of routes; the result is the route's next-hop id (or 0 without a route), counted per route. */
#include "common.h"

struct route_key {
	__u32 prefixlen;
	__u32 addr;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 64);
	__type(key, struct route_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} routes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

SEC("xdp")
int route(struct xdp_md *ctx)
{
	struct iphdr *ip = parse_ipv4(ctx);
	if (!ip)
		return 0;
	struct route_key key = { .prefixlen = 32, .addr = ip->daddr };
	__u32 *hop = bpf_map_lookup_elem(&routes, &key);
	if (!hop)
		return 0;
	__u32 id = *hop & 63;
	__u64 *n = bpf_map_lookup_elem(&hits, &id);
	if (n)
		*n += 1;
	return *hop;
}

char LICENSE[] SEC("license") = "GPL";
