# An arbitrary number (the victim's map address) as a map handle.
# expect: Helper bpf_map_update_elem BadArgument arg 1 at 7
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
mov %r3, %r2
lddw %r1, {VICTIM_VALUE}
mov %r4, 0
call 2
exit
