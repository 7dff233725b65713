# rule: a plain store into a pool map's value is refused: only atomics apply in place.
# context: buffer 8
# map: counts hash 4 16 8 pool
# reject: ReadOnly at 8
stw [%r10-4], 0             # 0: key = 0
mov %r2, %r10               # 1
add %r2, -4                 # 2
lddw %r1, map_idx(0)        # 3
call 1                      # 5: bpf_map_lookup_elem
jeq %r0, 0, out             # 6
mov %r2, 1                  # 7
stxdw [%r0+0], %r2          # 8
out:
mov %r0, 0
exit
