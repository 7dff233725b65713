# rule: a map handle is not a pointer into memory: no arithmetic on it.
# context: buffer 8
# map: values array 4 8 1
# reject: PointerArithmetic at 2
lddw %r1, map_idx(0)
add %r1, 8
mov %r0, 0
exit
