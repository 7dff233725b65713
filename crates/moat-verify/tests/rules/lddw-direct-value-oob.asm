# rule: a direct map value pointer is bounded by the value size.
# context: buffer 8
# map: values array 4 8 1
# reject: OutOfBounds at 2
lddw %r1, map_idx_value(0, 4)
ldxdw %r0, [%r1+0]
exit
