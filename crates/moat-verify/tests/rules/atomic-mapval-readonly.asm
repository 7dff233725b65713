# rule: an atomic operation writes, so it is refused on a map the program may only read.
# context: buffer 8
# map: consts array 4 8 1 ro
# reject: ReadOnly at 3
lddw %r1, map_idx_value(0, 0)   # 0
mov %r2, 1                      # 2
lock add [%r1+0], %r2           # 3
mov %r0, 0
exit
