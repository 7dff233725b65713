# rule: an unprivileged program may not subtract two map value pointers, as in the kernel (the difference reveals where elements are).
# context: buffer 8
# map: values array 4 8 2
# unprivileged
# reject: PointerArithmetic at 15
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
sub %r0, %r6                # 15
out:
mov %r0, 0
exit
