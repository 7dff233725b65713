# rule: a map argument must be of a type the helper accepts (no lookups in a ring buffer).
# context: buffer 8
# map: events ringbuf 0 0 4096
# reject: HelperArg at 5
stw [%r10-4], 0             # 0: key = 0
mov %r2, %r10               # 1
add %r2, -4                 # 2
lddw %r1, map_idx(0)        # 3
call 1                      # 5: bpf_map_lookup_elem
mov %r0, 0
exit
