/* A request filter whose policy is an eBPF program, for the embedding example
 * (crates/moat/examples/request_filter.rs). The host passes a `struct request` as the program's
 * context (moat's generic buffer context); the program returns 1 to allow, 0 to deny.
 * Policy: paths under /admin only for allow-listed clients; at most `max_requests` per client. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct request {
	__u32 client_ip;
	__u32 method; /* 1 GET, 2 POST, ... */
	__u32 path_len;
	char path[64];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u8);
} admins SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} requests SEC(".maps");

const volatile __u64 max_requests = 3;

static __always_inline int is_admin_path(const struct request *r)
{
	const char prefix[] = "/admin";
	if (r->path_len < sizeof(prefix) - 1)
		return 0;
	for (int i = 0; i < (int)sizeof(prefix) - 1; i++)
		if (r->path[i] != prefix[i])
			return 0;
	return 1;
}

SEC("moat/request")
int filter(struct request *r)
{
	__u32 client = r->client_ip;
	__u64 one = 1, *count = bpf_map_lookup_elem(&requests, &client);
	if (count) {
		if (*count >= max_requests)
			return 0;
		__sync_fetch_and_add(count, 1);
	} else {
		bpf_map_update_elem(&requests, &client, &one, BPF_NOEXIST);
	}
	if (is_admin_path(r) && !bpf_map_lookup_elem(&admins, &client))
		return 0;
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
