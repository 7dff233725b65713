# rule: a spilled map value pointer filled back keeps its type and its null check.
# context: buffer 8
# map: values array 4 8 1
# accept
stw [%r10-4], 0             # 0: key = 0
mov %r2, %r10               # 1
add %r2, -4                 # 2
lddw %r1, map_idx(0)        # 3
call 1                      # 5: bpf_map_lookup_elem
jeq %r0, 0, out             # 6
stxdw [%r10-16], %r0        # 7
ldxdw %r1, [%r10-16]        # 8
ldxdw %r0, [%r1+0]          # 9
exit
out:
exit
