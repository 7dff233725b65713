/* Counts calls to `target_add(a, b)` of the bundled test program (moat-trace-target) by the value of
 * its first argument, and sums what it returns (a uretprobe).
 *   moat trace examples/c/uprobe_count.o -- moat-trace-target 1000 */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u64);
} calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} returned SEC(".maps");

SEC("uprobe/moat-trace-target:target_add")
int BPF_KPROBE(count_add, __u64 a, __u64 b)
{
	__u64 one = 1;
	__u64 *n = bpf_map_lookup_elem(&calls, &a);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&calls, &a, &one, BPF_NOEXIST);
	return 0;
}

SEC("uretprobe/moat-trace-target:target_add")
int BPF_KRETPROBE(sum_add, __u64 ret)
{
	__u32 zero = 0;
	__u64 *sum = bpf_map_lookup_elem(&returned, &zero);
	if (sum)
		__sync_fetch_and_add(sum, ret);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
