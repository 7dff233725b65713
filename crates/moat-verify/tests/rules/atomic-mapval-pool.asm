# rule: a pool map's values are read-only, but atomics apply in place (the counter idiom): add, fetch add, cmpxchg.
# context: buffer 8
# map: counts hash 4 16 8 pool
# accept
stw [%r10-4], 0             # 0: key = 0
mov %r2, %r10               # 1
add %r2, -4                 # 2
lddw %r1, map_idx(0)        # 3
call 1                      # 5: bpf_map_lookup_elem
jeq %r0, 0, out             # 6
mov %r2, 1                  # 7
lock add [%r0+0], %r2       # 8
lock fetch add [%r0+8], %r2 # 9
mov %r1, %r0                # 10
mov %r0, 0                  # 11
lock cmpxchg [%r1+8], %r2   # 12
out:
mov %r0, 0
exit
