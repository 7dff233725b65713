/* A bounded loop with bpf_loop: sums the bytes of the packet (up to 1500) in a callback and returns
 * the sum folded to 16 bits. */
#include "common.h"

struct loop_ctx {
	void *data;
	void *data_end;
	__u64 sum;
};

static long add_byte(__u32 i, void *arg)
{
	struct loop_ctx *lc = arg;
	__u8 *p = lc->data + i;
	if ((void *)(p + 1) > lc->data_end)
		return 1;
	lc->sum += *p;
	return 0;
}

SEC("xdp")
int sum_bytes(struct xdp_md *ctx)
{
	struct loop_ctx lc = {
		.data = (void *)(long)ctx->data,
		.data_end = (void *)(long)ctx->data_end,
		.sum = 0,
	};
	bpf_loop(1500, add_byte, &lc, 0);
	return (int)(lc.sum & 0xffff);
}

char LICENSE[] SEC("license") = "GPL";
