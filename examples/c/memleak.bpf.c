/* Outstanding allocations per call stack: moat memleak's programs, after BCC's libbpf-tools
 * memleak.bpf.c. Uprobes and uretprobes on glibc's allocator record each allocation (size and
 * the user stack it came from) in `allocs`, keyed by address; frees remove it again. Per stack,
 * `combined_allocs` keeps outstanding bytes and blocks, so a reader needs no walk of `allocs`.
 *   moat memleak -- ./leaky          (attaches this object; see moat memleak --help)
 *   moat trace examples/c/memleak.o -- CMD   (the raw maps) */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define MAX_ALLOCS 1000000
#define MAX_STACKS 10240
#define MAX_DEPTH 127

/* Settings a loader may change before loading (moat memleak --min-size/--max-size). */
const volatile __u64 min_size = 0;
const volatile __u64 max_size = (__u64)-1;
const volatile __u64 page_size = 4096;

struct alloc_info {
	__u64 size;
	__u64 timestamp_ns;
	__s64 stack_id;
};

/* Outstanding bytes and blocks of one stack. */
struct combined_alloc_info {
	__u64 total_size;
	__u64 number_of_allocs;
};

/* The size asked for, per thread, between an allocator's entry and its return. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, __u64);
} sizes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ALLOCS);
	__type(key, __u64);
	__type(value, struct alloc_info);
} allocs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_STACKS);
	__type(key, __u64);
	__type(value, struct combined_alloc_info);
} combined_allocs SEC(".maps");

/* posix_memalign's out-pointer, per thread. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, __u64);
} memptrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, MAX_STACKS);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, MAX_DEPTH * sizeof(__u64));
} stack_traces SEC(".maps");

static __always_inline __u32 tid(void)
{
	return (__u32)bpf_get_current_pid_tgid();
}

static __always_inline void stats_add(__u64 stack_id, __u64 size)
{
	struct combined_alloc_info zero = {}, *c;

	c = bpf_map_lookup_elem(&combined_allocs, &stack_id);
	if (!c) {
		bpf_map_update_elem(&combined_allocs, &stack_id, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&combined_allocs, &stack_id);
		if (!c)
			return;
	}
	__sync_fetch_and_add(&c->total_size, size);
	__sync_fetch_and_add(&c->number_of_allocs, 1);
}

static __always_inline void stats_del(__u64 stack_id, __u64 size)
{
	struct combined_alloc_info *c = bpf_map_lookup_elem(&combined_allocs, &stack_id);

	if (!c)
		return;
	__sync_fetch_and_sub(&c->total_size, size);
	__sync_fetch_and_sub(&c->number_of_allocs, 1);
}

static __always_inline int alloc_enter(__u64 size)
{
	__u32 t = tid();

	if (size < min_size || size > max_size)
		return 0;
	bpf_map_update_elem(&sizes, &t, &size, BPF_ANY);
	return 0;
}

static __always_inline int alloc_exit(struct pt_regs *ctx, __u64 address)
{
	__u32 t = tid();
	__u64 *size = bpf_map_lookup_elem(&sizes, &t);
	struct alloc_info info = {};

	if (!size)
		return 0;
	info.size = *size;
	bpf_map_delete_elem(&sizes, &t);
	/* mmap fails with MAP_FAILED, the others with NULL. */
	if (address == 0 || address == (__u64)-1)
		return 0;
	info.timestamp_ns = bpf_ktime_get_ns();
	info.stack_id = bpf_get_stackid(ctx, &stack_traces, BPF_F_USER_STACK);
	bpf_map_update_elem(&allocs, &address, &info, BPF_ANY);
	stats_add(info.stack_id, info.size);
	return 0;
}

static __always_inline int free_enter(__u64 address)
{
	struct alloc_info *info = bpf_map_lookup_elem(&allocs, &address);
	__s64 stack_id;
	__u64 size;

	if (!info)
		return 0;
	stack_id = info->stack_id;
	size = info->size;
	bpf_map_delete_elem(&allocs, &address);
	stats_del(stack_id, size);
	return 0;
}

SEC("uprobe/libc.so.6:malloc")
int BPF_KPROBE(malloc_enter, __u64 size)
{
	return alloc_enter(size);
}

SEC("uretprobe/libc.so.6:malloc")
int BPF_KRETPROBE(malloc_exit, __u64 address)
{
	return alloc_exit(ctx, address);
}

SEC("uprobe/libc.so.6:free")
int BPF_KPROBE(free_enter_probe, __u64 address)
{
	return free_enter(address);
}

SEC("uprobe/libc.so.6:calloc")
int BPF_KPROBE(calloc_enter, __u64 nmemb, __u64 size)
{
	return alloc_enter(nmemb * size);
}

SEC("uretprobe/libc.so.6:calloc")
int BPF_KRETPROBE(calloc_exit, __u64 address)
{
	return alloc_exit(ctx, address);
}

SEC("uprobe/libc.so.6:realloc")
int BPF_KPROBE(realloc_enter, __u64 ptr, __u64 size)
{
	free_enter(ptr);
	return alloc_enter(size);
}

SEC("uretprobe/libc.so.6:realloc")
int BPF_KRETPROBE(realloc_exit, __u64 address)
{
	return alloc_exit(ctx, address);
}

SEC("uprobe/libc.so.6:mmap")
int BPF_KPROBE(mmap_enter, __u64 addr, __u64 size)
{
	return alloc_enter(size);
}

SEC("uretprobe/libc.so.6:mmap")
int BPF_KRETPROBE(mmap_exit, __u64 address)
{
	return alloc_exit(ctx, address);
}

SEC("uprobe/libc.so.6:munmap")
int BPF_KPROBE(munmap_enter, __u64 address)
{
	return free_enter(address);
}

SEC("uprobe/libc.so.6:posix_memalign")
int BPF_KPROBE(posix_memalign_enter, __u64 memptr, __u64 alignment, __u64 size)
{
	__u32 t = tid();

	bpf_map_update_elem(&memptrs, &t, &memptr, BPF_ANY);
	return alloc_enter(size);
}

SEC("uretprobe/libc.so.6:posix_memalign")
int BPF_KRETPROBE(posix_memalign_exit, int ret)
{
	__u32 t = tid();
	__u64 *memptr = bpf_map_lookup_elem(&memptrs, &t);
	__u64 address = 0;

	if (!memptr)
		return 0;
	bpf_probe_read_user(&address, sizeof(address), (void *)*memptr);
	bpf_map_delete_elem(&memptrs, &t);
	/* On failure posix_memalign leaves *memptr alone: record nothing. */
	return alloc_exit(ctx, ret == 0 ? address : 0);
}

SEC("uprobe/libc.so.6:aligned_alloc")
int BPF_KPROBE(aligned_alloc_enter, __u64 alignment, __u64 size)
{
	return alloc_enter(size);
}

SEC("uretprobe/libc.so.6:aligned_alloc")
int BPF_KRETPROBE(aligned_alloc_exit, __u64 address)
{
	return alloc_exit(ctx, address);
}

SEC("uprobe/libc.so.6:valloc")
int BPF_KPROBE(valloc_enter, __u64 size)
{
	return alloc_enter(size);
}

SEC("uretprobe/libc.so.6:valloc")
int BPF_KRETPROBE(valloc_exit, __u64 address)
{
	return alloc_exit(ctx, address);
}

SEC("uprobe/libc.so.6:memalign")
int BPF_KPROBE(memalign_enter, __u64 alignment, __u64 size)
{
	return alloc_enter(size);
}

SEC("uretprobe/libc.so.6:memalign")
int BPF_KRETPROBE(memalign_exit, __u64 address)
{
	return alloc_exit(ctx, address);
}

SEC("uprobe/libc.so.6:pvalloc")
int BPF_KPROBE(pvalloc_enter, __u64 size)
{
	/* pvalloc rounds the size up to whole pages. */
	return alloc_enter((size + page_size - 1) & ~(page_size - 1));
}

SEC("uretprobe/libc.so.6:pvalloc")
int BPF_KRETPROBE(pvalloc_exit, __u64 address)
{
	return alloc_exit(ctx, address);
}

char LICENSE[] SEC("license") = "GPL";
