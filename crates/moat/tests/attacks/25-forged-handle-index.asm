# A map handle with the right tag and an index past its own table (the victim's table has more maps).
# expect: Helper bpf_map_lookup_elem BadArgument arg 1 at 5
mov %r2, %r10
add %r2, -4
stw [%r10-4], 0
lddw %r1, 0x6d61700000000007
call 1
exit
