# rule: reading a read-only map is fine (twin of lddw-rodata-write).
# context: buffer 8
# map: rodata array 4 8 1 ro
# accept
lddw %r1, map_idx_value(0, 0)
ldxdw %r0, [%r1+0]
exit
