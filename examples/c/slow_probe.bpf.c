/* A probe far slower than the function it watches: every call of `target_add` runs 2^22 steps
 * through bpf_loop (tens of milliseconds). The verifier accepts it — it terminates — but it would
 * stall the traced program. With a time budget every run is stopped at the budget, counted as an
 * overrun like a violation, the probe is disabled after three, and the program keeps its results.
 *   moat trace --time-budget 50us examples/c/slow_probe.o -- moat-trace-target 100 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

static long step(__u64 index, void *ctx)
{
	__u64 *acc = ctx;
	*acc = *acc * 6364136223846793005ULL + index;
	return 0;
}

SEC("uprobe/moat-trace-target:target_add")
int slow(void *ctx)
{
	__u64 acc = 0;
	bpf_loop(1 << 22, step, &acc, 0);
	return acc & 1;
}

char LICENSE[] SEC("license") = "GPL";
