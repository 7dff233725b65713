# rule: the map a map of maps returns is a handle, not memory: reading through it is refused.
# context: xdp
# map: outer array_of_maps 4 4 2 inner=1
# map: inner array 4 8 1
# reject: NotAPointer at 7
stw [%r10-4], 0             # 0
mov %r2, %r10               # 1
add %r2, -4                 # 2
lddw %r1, map_idx(0)        # 3
call 1                      # 5
jeq %r0, 0, +1              # 6
ldxw %r0, [%r0+0]           # 7: a map is not memory
mov %r0, 2
exit
