/* A probe that writes outside its memory: the verifier refuses it; loaded with --no-verify, the
 * engines' checks under sfi stop every run, moat disables it after three violations, and the traced
 * program (moat-trace-target) goes on with its own results.
 *   moat trace --no-verify examples/c/misbehave.o -- moat-trace-target 100 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("uprobe/moat-trace-target:target_add")
int scribble(void *ctx)
{
	/* The traced program's stack, as if a probe tried to corrupt it. */
	__u64 *sp = (__u64 *)((__u64 *)ctx)[19];
	*sp = 0;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
