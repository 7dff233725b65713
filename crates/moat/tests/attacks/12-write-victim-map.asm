# Overwrites another program's map value at its leaked address.
# expect: OutOfBounds at 2
lddw %r1, {VICTIM_VALUE}
stdw [%r1], 0
mov %r0, 0
exit
