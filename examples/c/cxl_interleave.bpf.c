/* moat cxlsim placement policy: every allocation interleaved by page between local DRAM and CXL
 * tier `tier` (default 1), as a NUMA interleave over two nodes would place it. */
#include "cxlsim.h"

const volatile __u32 tier = 1;

static __always_inline __u32 choose_tier(const struct cxlsim_alloc *a)
{
	return CXLSIM_INTERLEAVE(tier);
}
