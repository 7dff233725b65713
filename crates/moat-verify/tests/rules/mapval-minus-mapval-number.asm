# rule: a privileged program may subtract two map value pointers and use the difference as a number (twin of mapval-minus-mapval).
# context: buffer 8
# map: values array 4 8 2
# accept
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
and %r0, 1                  # 16
exit
out:
mov %r0, 0
exit
