/* moat cxlsim placement policy: everything in local DRAM (the baseline). */
#include "cxlsim.h"

static __always_inline __u32 choose_tier(const struct cxlsim_alloc *a)
{
	return 0;
}
