# Looks up its own map value, then adds the distance to the victim's value (a guess from the layout).
# expect: OutOfBounds at 13
mov %r1, 0
stxw [%r10-4], %r1
lddw %r1, map_idx(0)
mov %r2, %r10
add %r2, -4
call 1
jne %r0, 0, +2
mov %r0, 1
exit
lddw %r1, {DELTA}
add %r0, %r1
stdw [%r0], 0
mov %r0, 0
exit
