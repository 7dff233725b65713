/* Traces openat(2) through a perf event array, as older libbpf tools (opensnoop, execsnoop) do:
 * one bpf_perf_event_output record per call with the pid, the flags and the file name.
 *   moat trace examples/c/opensnoop_perf.o -- ls / */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* The kernel's tracepoint record: struct trace_event_raw_sys_enter. */
struct sys_enter {
	__u64 common;
	__s64 id;
	__u64 args[6];
};

struct event {
	__u32 pid;
	__u32 flags;
	char name[64];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
	__uint(max_entries, 128);
} events SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_openat")
int opensnoop(struct sys_enter *ctx)
{
	struct event e = {};

	e.pid = bpf_get_current_pid_tgid() >> 32;
	e.flags = (__u32)ctx->args[2];
	bpf_probe_read_user_str(e.name, sizeof(e.name), (const void *)ctx->args[1]);
	bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &e, sizeof(e));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
