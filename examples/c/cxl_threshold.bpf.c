/* moat cxlsim placement policy: allocations of at least `min_size` bytes (default 1 MiB) on CXL
 * tier `tier` (default 1), smaller ones local: big, cold buffers out, small hot objects in. */
#include "cxlsim.h"

const volatile __u64 min_size = 1 << 20;
const volatile __u32 tier = 1;

static __always_inline __u32 choose_tier(const struct cxlsim_alloc *a)
{
	return a->size >= min_size ? tier : 0;
}
