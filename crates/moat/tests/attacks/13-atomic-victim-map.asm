# Atomically adds to another program's map value.
# expect: BadAtomic at 3
lddw %r1, {VICTIM_VALUE}
mov %r2, 1
lock add [%r1], %r2
mov %r0, 0
exit
