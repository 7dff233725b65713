/* Counts every system call the process makes, by number (raw_tracepoint/sys_enter, whose context
 * is struct bpf_raw_tracepoint_args: args[0] the registers, args[1] the number), and reads the
 * first argument of each write(2) from the saved registers with bpf_probe_read_user.
 *   moat trace examples/c/syscall_count.o -- ls / */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 512);
	__type(key, __u64);
	__type(value, __u64);
} syscalls SEC(".maps");

/* write(2) calls per file descriptor. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u64);
} writes SEC(".maps");

static __always_inline void bump(void *map, __u64 key)
{
	__u64 one = 1;
	__u64 *n = bpf_map_lookup_elem(map, &key);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(map, &key, &one, BPF_NOEXIST);
}

SEC("raw_tracepoint/sys_enter")
int count_syscalls(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 nr = ctx->args[1];
	bump(&syscalls, nr);
	if (nr == 1) {
		struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
		__u64 fd = 0;
		bpf_probe_read_user(&fd, sizeof(fd), &regs->rdi);
		bump(&writes, fd);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
