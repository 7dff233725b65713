/* Persistent, shared packet counter: counts packets and bytes per IP protocol (non-IPv4 frames under 0)
 * and in total (key 256) in a hash map that lives in moat's pool (`moat run --pool PATH`), so counts
 * survive the process and every process running the program on the same pool adds to the same
 * counters. Returns XDP_PASS (2).
 *
 * The map is pinned by name (LIBBPF_PIN_BY_NAME): with a pool, moat reuses the pool's map of that name
 * or creates it. Pool map values are read-only for programs; they are changed with
 * bpf_map_update_elem, which is logged and failure-atomic. moat's transaction helpers make the
 * read-modify-write of both counters one atomic step across processes: other processes wait at
 * moat_pool_tx_begin, and a run that fails halfway (or forgets to commit) is rolled back. */
#include "common.h"

/* moat's own helpers (ids from 0x6d6f0000, see moat::helpers::id). */
static long (*moat_pool_tx_begin)(void) = (void *)0x6d6f0001;
static long (*moat_pool_tx_commit)(void) = (void *)0x6d6f0002;
static long (*moat_pool_tx_abort)(void) = (void *)0x6d6f0003;

#define ALL 256

struct counts {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 257);
	__type(key, __u32);
	__type(value, struct counts);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pool_counts SEC(".maps");

/* Adds one packet of `len` bytes to the counters under `key`. */
static __always_inline long add(__u32 key, __u64 len)
{
	struct counts next = { .packets = 1, .bytes = len };
	struct counts *now = bpf_map_lookup_elem(&pool_counts, &key);
	if (now) {
		next.packets += now->packets;
		next.bytes += now->bytes;
	}
	return bpf_map_update_elem(&pool_counts, &key, &next, BPF_ANY);
}

SEC("xdp")
int count_packets(struct xdp_md *ctx)
{
	struct iphdr *ip = parse_ipv4(ctx);
	__u32 proto = ip ? ip->protocol : 0;
	__u64 len = ctx->data_end - ctx->data;
	if (moat_pool_tx_begin() != 0)
		return XDP_PASS;
	if (add(proto, len) != 0 || add(ALL, len) != 0) {
		moat_pool_tx_abort();
		return XDP_PASS;
	}
	moat_pool_tx_commit();
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
