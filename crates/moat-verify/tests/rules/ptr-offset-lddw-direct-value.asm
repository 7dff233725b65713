# rule: a direct map value pointer must start inside the value, as in the kernel.
# context: buffer 8
# map: values array 4 8 1
# reject: OutOfBounds at 0
lddw %r1, map_idx_value(0, 0x7fffffff)
ldxb %r0, [%r1-0x7fff]
exit
