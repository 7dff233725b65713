/* Programs for moat-bench's bench_uprobe: empty entry and return probes, one that looks up and
 * updates a hash map 1 000 times per hit (as bpftime's benchmark does, through bpf_loop), and two
 * with 100 unrolled lookups or updates (the cost of one map operation from a probe). Attached
 * through the API (sections without a target), in moat and in the kernel alike. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

SEC("uprobe")
int empty(void *ctx)
{
	return 0;
}

SEC("uretprobe")
int empty_ret(void *ctx)
{
	return 0;
}

/* Counts hits: checks that a probe really fires. */
SEC("uprobe")
int count(void *ctx)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&hits, &zero);
	if (n)
		*n += 1;
	return 0;
}

static long lookup_update(__u32 i, void *data)
{
	__u32 key = i & 255;
	__u64 *v = bpf_map_lookup_elem(&table, &key);
	if (v) {
		*v += 1;
	} else {
		__u64 one = 1;
		bpf_map_update_elem(&table, &key, &one, BPF_ANY);
	}
	return 0;
}

SEC("uprobe")
int hash_1000(void *ctx)
{
	bpf_loop(1000, lookup_update, 0, 0);
	return 0;
}

SEC("uprobe")
int hash_lookup_100(void *ctx)
{
	__u64 sum = 0;
#pragma clang loop unroll(full)
	for (__u32 i = 0; i < 100; i++) {
		__u32 key = i;
		__u64 *v = bpf_map_lookup_elem(&table, &key);
		if (v)
			sum += *v;
	}
	return sum & 1;
}

SEC("uprobe")
int hash_update_100(void *ctx)
{
#pragma clang loop unroll(full)
	for (__u32 i = 0; i < 100; i++) {
		__u32 key = i;
		__u64 value = i;
		bpf_map_update_elem(&table, &key, &value, BPF_ANY);
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int empty_tp(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
