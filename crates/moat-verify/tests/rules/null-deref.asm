# rule: the result of bpf_map_lookup_elem may be null and must be checked before use.
# context: buffer 8
# map: values hash 4 8 16
# reject: MaybeNull at 6
stw [%r10-4], 0             # 0: key = 0
mov %r2, %r10               # 1
add %r2, -4                 # 2
lddw %r1, map_idx(0)        # 3
call 1                      # 5: bpf_map_lookup_elem
ldxdw %r1, [%r0+0]          # 6
mov %r0, 0
exit
