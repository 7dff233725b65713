/* A latency histogram of `target_work` of the bundled test program: the entry probe stores the time
 * per thread, the return probe adds log2(nanoseconds) to a histogram and sends one event per call
 * through a ring buffer (pid, tid, latency, function address).
 *   moat trace examples/c/uretprobe_latency.o -- moat-trace-target 100 */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u64);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} hist SEC(".maps");

struct event {
	__u32 pid;
	__u32 tid;
	__u64 ns;
	__u64 func;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} events SEC(".maps");

SEC("uprobe/moat-trace-target:target_work")
int BPF_KPROBE(work_entry)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 now = bpf_ktime_get_ns();
	bpf_map_update_elem(&start, &id, &now, BPF_ANY);
	return 0;
}

SEC("uretprobe/moat-trace-target:target_work")
int BPF_KRETPROBE(work_return)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 *t0 = bpf_map_lookup_elem(&start, &id);
	if (!t0)
		return 0;
	__u64 ns = bpf_ktime_get_ns() - *t0;
	bpf_map_delete_elem(&start, &id);
	__u32 slot = 0;
	for (__u64 v = ns; v > 1 && slot < 63; v >>= 1)
		slot++;
	__u64 *count = bpf_map_lookup_elem(&hist, &slot);
	if (count)
		__sync_fetch_and_add(count, 1);
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->ns = ns;
	e->func = bpf_get_func_ip(ctx);
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
