# rule: a helper may not write into a read-only map either.
# context: tracing
# map: rodata array 4 8 1 ro
# reject: ReadOnly at 4
lddw %r1, map_idx_value(0, 0)
mov %r2, 8
mov %r3, 0
call 4
exit
