/* moat cxlsim placement policy: a hot-call-site list. Allocations from the call sites
 * `hot_site0` .. `hot_site3` (return addresses of the allocator calls, as moat cxlsim's site table
 * prints them; set with --global hot_site0=0x401234; run the program with ASLR off, `setarch -R`,
 * when it is position-independent) stay local, and so do the first `local_budget` bytes (default
 * 0); everything else goes to CXL tier `tier` (default 1). */
#include "cxlsim.h"

const volatile __u32 tier = 1;
const volatile __u64 local_budget = 0;
const volatile __u64 hot_site0 = 0;
const volatile __u64 hot_site1 = 0;
const volatile __u64 hot_site2 = 0;
const volatile __u64 hot_site3 = 0;

static __always_inline __u32 choose_tier(const struct cxlsim_alloc *a)
{
	__u64 s = a->site;

	if (s && (s == hot_site0 || s == hot_site1 || s == hot_site2 || s == hot_site3))
		return 0;
	return a->local_bytes + a->size <= local_budget ? 0 : tier;
}
