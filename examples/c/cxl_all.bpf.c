/* moat cxlsim placement policy: every allocation on CXL tier `tier` (default 1). */
#include "cxlsim.h"

const volatile __u32 tier = 1;

static __always_inline __u32 choose_tier(const struct cxlsim_alloc *a)
{
	return tier;
}
