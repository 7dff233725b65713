# bpf_map_update_elem with a host heap pointer as the value: the helper must not copy host memory into the map (arg 3).
# expect: Helper bpf_map_update_elem OutOfBounds arg 3 at 9
mov %r1, 0
stxw [%r10-4], %r1
lddw %r1, map_idx(0)
mov %r2, %r10
add %r2, -4
lddw %r3, {HEAP}
mov %r4, 0
call 2
exit
