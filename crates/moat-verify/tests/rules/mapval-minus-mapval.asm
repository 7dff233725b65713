# rule: the difference of two map value pointers is an unknown number: they may point to different elements.
# Regression: `lookup(k1) - lookup(k0)` was the constant 0 (the elements are really 8 or more bytes
# apart), so adding it to fp-8 "proved" an access at fp-8.
# context: buffer 8
# map: values array 4 8 2
# reject: PointerOffset at 19
stw [%r10-4], 0             # 0: key 0
mov %r2, %r10               # 1
add %r2, -4                 # 2
lddw %r1, map_idx(0)        # 3
call 1                      # 5
jeq %r0, 0, out             # 6
mov %r6, %r0                # 7: element 0
stw [%r10-4], 1             # 8: key 1
mov %r2, %r10               # 9
add %r2, -4                 # 10
lddw %r1, map_idx(0)        # 11
call 1                      # 13
jeq %r0, 0, out             # 14
sub %r0, %r6                # 15: an unknown number
mov %r1, %r10               # 16
add %r1, -8                 # 17
mov %r2, %r0                # 18
add %r1, %r2                # 19: refused
stdw [%r1+0], 0             # 20
out:
mov %r0, 0
exit
