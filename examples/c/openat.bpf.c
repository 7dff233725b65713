/* Traces openat(2): one ring-buffer event per call with the file name (read from the process with
 * bpf_probe_read_user_str), and a count of calls per result sign at exit.
 *   moat trace examples/c/openat.o -- ls / */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* The kernel's tracepoint records: struct trace_event_raw_sys_enter / sys_exit. */
struct sys_enter {
	__u64 common;
	__s64 id;
	__u64 args[6];
};

struct sys_exit {
	__u64 common;
	__s64 id;
	__s64 ret;
};

struct event {
	__u32 pid;
	__s32 dirfd;
	char name[64];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} results SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_openat")
int trace_openat(struct sys_enter *ctx)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->dirfd = (__s32)ctx->args[0];
	bpf_probe_read_user_str(e->name, sizeof(e->name), (const void *)ctx->args[1]);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int trace_openat_exit(struct sys_exit *ctx)
{
	__u32 slot = ctx->ret < 0 ? 1 : 0;
	__u64 *n = bpf_map_lookup_elem(&results, &slot);
	if (n)
		__sync_fetch_and_add(n, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
