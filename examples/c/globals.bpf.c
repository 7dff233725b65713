/* Global variables: a constant in .rodata, a counter in .data, scratch in .bss. Returns the packet
 * length times the multiplier, plus the number of earlier runs. */
#include "common.h"

const volatile __u32 multiplier = 3;
__u64 runs = 100;
__u64 last_len;

SEC("xdp")
int use_globals(struct xdp_md *ctx)
{
	__u64 len = ctx->data_end - ctx->data;
	__u64 previous = runs;
	runs = previous + 1;
	last_len = len;
	return (int)(len * multiplier + previous);
}

char LICENSE[] SEC("license") = "GPL";
