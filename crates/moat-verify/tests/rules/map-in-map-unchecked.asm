# rule: the map a map of maps returns may be null: using it as a map before checking is refused (twin of map-in-map-lookup).
# context: xdp
# map: outer array_of_maps 4 4 2 inner=1
# map: inner array 4 8 1
# reject: HelperArg at 9
stw [%r10-4], 0             # 0
mov %r2, %r10               # 1
add %r2, -4                 # 2
lddw %r1, map_idx(0)        # 3
call 1                      # 5
mov %r1, %r0                # 6
mov %r2, %r10               # 7
add %r2, -4                 # 8
call 1                      # 9: r1 may be null
mov %r0, 2
exit
