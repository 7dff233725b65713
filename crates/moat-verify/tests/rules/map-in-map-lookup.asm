# rule: a lookup in a map of maps returns a map like its inner map, or null; checked, it is a map handle for a lookup in it.
# context: xdp
# map: outer array_of_maps 4 4 2 inner=1
# map: inner array 4 8 1
# accept
stw [%r10-4], 0             # 0: key 0
mov %r2, %r10               # 1
add %r2, -4                 # 2
lddw %r1, map_idx(0)        # 3
call 1                      # 5: the inner map, or null
mov %r1, %r0                # 6
mov %r0, 2                  # 7
jeq %r1, 0, out             # 8
mov %r2, %r10               # 9
add %r2, -4                 # 10
call 1                      # 11: a value of the inner map, or null
jeq %r0, 0, +1              # 12
ldxdw %r0, [%r0+0]          # 13
out:
exit
