/* Counts glibc's malloc and free calls and the bytes malloc was asked for.
 *   moat trace examples/c/malloc_free.o -- python3 -c 'print(1)' */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

enum { MALLOCS, FREES, BYTES, NSLOTS };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NSLOTS);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

static __always_inline void add(__u32 slot, __u64 v)
{
	__u64 *n = bpf_map_lookup_elem(&counts, &slot);
	if (n)
		__sync_fetch_and_add(n, v);
}

SEC("uprobe/libc.so.6:malloc")
int BPF_KPROBE(on_malloc, __u64 size)
{
	add(MALLOCS, 1);
	add(BYTES, size);
	return 0;
}

SEC("uprobe/libc.so.6:free")
int BPF_KPROBE(on_free, void *ptr)
{
	if (ptr)
		add(FREES, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
