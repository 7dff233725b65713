/* The allocation tracker of `moat cxlsim`: include it, then define the placement policy
 *
 *     static __always_inline __u32 choose_tier(const struct cxlsim_alloc *a);
 *
 * which returns the tier of each allocation: 0 = local DRAM, k = the k-th `device` of the
 * topology, CXLSIM_INTERLEAVE(k) = pages alternating between device k and local DRAM.
 *
 * Uprobes and uretprobes on glibc's allocator (malloc, calloc, realloc, free, posix_memalign,
 * aligned_alloc, memalign, valloc, mmap, munmap) ask the policy at each allocation's entry and
 * record the allocations it placed on CXL in `cxl_placed` (address -> size, call site, tier,
 * flags), which moat cxlsim reads each epoch. malloc's own mmap calls are tracked apart from
 * malloc's (two pending slots per thread), so a large malloc is placed by its caller's site. */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define CXLSIM_INTERLEAVE(tier) ((tier) | 0x100)
#define CXLSIM_MAX_PLACED 1000000

/* What the policy sees of an allocation. */
struct cxlsim_alloc {
	__u64 size;        /* bytes asked for */
	__u64 site;        /* the return address of the allocator call */
	__u32 tid;         /* the calling thread */
	__u32 pad;
	__u64 local_bytes; /* bytes placed locally so far (cumulative) */
	__u64 cxl_bytes;   /* bytes placed on CXL tiers so far (cumulative) */
};

/* A placed range, as moat cxlsim decodes it. */
struct cxlsim_placed {
	__u64 size;
	__u64 site;
	__u32 tier;
	__u32 flags; /* 1: interleaved by page */
};

struct cxlsim_pending {
	__u64 size;
	__u64 site;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CXLSIM_MAX_PLACED);
	__type(key, __u64);
	__type(value, struct cxlsim_placed);
} cxl_placed SEC(".maps");

/* Per thread: the allocation in flight (slot 0: the malloc family, slot 1: mmap). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 20480);
	__type(key, __u64);
	__type(value, struct cxlsim_pending);
} cxl_pending SEC(".maps");

/* [0]: bytes placed locally, [1]: bytes placed on CXL (cumulative). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} cxl_totals SEC(".maps");

/* posix_memalign's out-pointer, per thread. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, __u64);
} cxl_memptrs SEC(".maps");

static __always_inline __u32 choose_tier(const struct cxlsim_alloc *a);

static __always_inline __u64 cxlsim_key(__u32 slot)
{
	return ((__u64)(__u32)bpf_get_current_pid_tgid() << 1) | slot;
}

static __always_inline __u64 cxlsim_total(__u32 i)
{
	__u64 *v = bpf_map_lookup_elem(&cxl_totals, &i);

	return v ? *v : 0;
}

static __always_inline int cxlsim_enter(struct pt_regs *ctx, __u32 slot, __u64 size)
{
	struct cxlsim_pending p = { .size = size };
	__u64 key = cxlsim_key(slot);

	/* At the entry of the allocator, [sp] is the caller's return address. */
	bpf_probe_read_user(&p.site, sizeof(p.site), (void *)PT_REGS_SP(ctx));
	bpf_map_update_elem(&cxl_pending, &key, &p, BPF_ANY);
	return 0;
}

static __always_inline int cxlsim_exit(__u32 slot, __u64 address)
{
	__u64 key = cxlsim_key(slot);
	struct cxlsim_pending *p = bpf_map_lookup_elem(&cxl_pending, &key);
	struct cxlsim_alloc a = {};
	struct cxlsim_placed placed = {};
	__u32 tier, i;
	__u64 *total;

	if (!p)
		return 0;
	a.size = p->size;
	a.site = p->site;
	bpf_map_delete_elem(&cxl_pending, &key);
	/* mmap fails with MAP_FAILED, the others with NULL. */
	if (address == 0 || address == (__u64)-1)
		return 0;
	a.tid = (__u32)bpf_get_current_pid_tgid();
	a.local_bytes = cxlsim_total(0);
	a.cxl_bytes = cxlsim_total(1);
	tier = choose_tier(&a);
	i = (tier & 0xff) ? 1 : 0;
	if (i) {
		placed.size = a.size;
		placed.site = a.site;
		placed.tier = tier & 0xff;
		placed.flags = (tier & 0x100) ? 1 : 0;
		bpf_map_update_elem(&cxl_placed, &address, &placed, BPF_ANY);
	}
	/* The total moves after the range is in the map: a reader that sees the new total
	 * (moat cxlsim --mode exact asks on every miss) then finds the range too. */
	total = bpf_map_lookup_elem(&cxl_totals, &i);
	if (total)
		__sync_fetch_and_add(total, a.size);
	return 0;
}

static __always_inline int cxlsim_free(__u64 address)
{
	bpf_map_delete_elem(&cxl_placed, &address);
	return 0;
}

SEC("uprobe/libc.so.6:malloc")
int BPF_KPROBE(cxl_malloc, __u64 size) { return cxlsim_enter(ctx, 0, size); }
SEC("uretprobe/libc.so.6:malloc")
int BPF_KRETPROBE(cxl_malloc_ret, __u64 address) { return cxlsim_exit(0, address); }
SEC("uprobe/libc.so.6:calloc")
int BPF_KPROBE(cxl_calloc, __u64 n, __u64 size) { return cxlsim_enter(ctx, 0, n * size); }
SEC("uretprobe/libc.so.6:calloc")
int BPF_KRETPROBE(cxl_calloc_ret, __u64 address) { return cxlsim_exit(0, address); }
SEC("uprobe/libc.so.6:realloc")
int BPF_KPROBE(cxl_realloc, __u64 old, __u64 size)
{
	cxlsim_free(old);
	return cxlsim_enter(ctx, 0, size);
}
SEC("uretprobe/libc.so.6:realloc")
int BPF_KRETPROBE(cxl_realloc_ret, __u64 address) { return cxlsim_exit(0, address); }
SEC("uprobe/libc.so.6:free")
int BPF_KPROBE(cxl_free, __u64 address) { return cxlsim_free(address); }
SEC("uprobe/libc.so.6:aligned_alloc")
int BPF_KPROBE(cxl_aligned_alloc, __u64 align, __u64 size) { return cxlsim_enter(ctx, 0, size); }
SEC("uretprobe/libc.so.6:aligned_alloc")
int BPF_KRETPROBE(cxl_aligned_alloc_ret, __u64 address) { return cxlsim_exit(0, address); }
SEC("uprobe/libc.so.6:memalign")
int BPF_KPROBE(cxl_memalign, __u64 align, __u64 size) { return cxlsim_enter(ctx, 0, size); }
SEC("uretprobe/libc.so.6:memalign")
int BPF_KRETPROBE(cxl_memalign_ret, __u64 address) { return cxlsim_exit(0, address); }
SEC("uprobe/libc.so.6:valloc")
int BPF_KPROBE(cxl_valloc, __u64 size) { return cxlsim_enter(ctx, 0, size); }
SEC("uretprobe/libc.so.6:valloc")
int BPF_KRETPROBE(cxl_valloc_ret, __u64 address) { return cxlsim_exit(0, address); }
SEC("uprobe/libc.so.6:posix_memalign")
int BPF_KPROBE(cxl_posix_memalign, __u64 memptr, __u64 align, __u64 size)
{
	__u32 t = (__u32)bpf_get_current_pid_tgid();

	bpf_map_update_elem(&cxl_memptrs, &t, &memptr, BPF_ANY);
	return cxlsim_enter(ctx, 0, size);
}
SEC("uretprobe/libc.so.6:posix_memalign")
int BPF_KRETPROBE(cxl_posix_memalign_ret, int ret)
{
	__u32 t = (__u32)bpf_get_current_pid_tgid();
	__u64 *memptr = bpf_map_lookup_elem(&cxl_memptrs, &t);
	__u64 address = 0;

	if (!memptr)
		return 0;
	bpf_probe_read_user(&address, sizeof(address), (void *)*memptr);
	bpf_map_delete_elem(&cxl_memptrs, &t);
	return cxlsim_exit(0, ret == 0 ? address : 0);
}
SEC("uprobe/libc.so.6:mmap")
int BPF_KPROBE(cxl_mmap, __u64 addr, __u64 size) { return cxlsim_enter(ctx, 1, size); }
SEC("uretprobe/libc.so.6:mmap")
int BPF_KRETPROBE(cxl_mmap_ret, __u64 address) { return cxlsim_exit(1, address); }
SEC("uprobe/libc.so.6:munmap")
int BPF_KPROBE(cxl_munmap, __u64 address) { return cxlsim_free(address); }

char LICENSE[] SEC("license") = "GPL";
