# rule: direct value access (map_idx_value) needs an array map.
# context: buffer 8
# map: values hash 4 8 16
# reject: DirectValueAccess at 0
lddw %r1, map_idx_value(0, 0)
mov %r0, 0
exit
