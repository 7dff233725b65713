# bpf_map_lookup_elem with the victim's map value as the key pointer (arg 2).
# expect: Helper bpf_map_lookup_elem OutOfBounds arg 2 at 4
lddw %r1, map_idx(0)
lddw %r2, {VICTIM_VALUE}
call 1
exit
