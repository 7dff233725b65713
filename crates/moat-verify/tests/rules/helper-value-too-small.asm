# rule: a map value argument must point to value_size accessible bytes.
# context: buffer 8
# map: values hash 4 16 16
# reject: HelperMemOutOfBounds at 9
stw [%r10-12], 0            # 0
stdw [%r10-8], 0            # 1
mov %r2, %r10               # 2
add %r2, -12                # 3
mov %r3, %r10               # 4
add %r3, -8                 # 5: 16 bytes from fp-8 pass the frame pointer
lddw %r1, map_idx(0)        # 6
mov %r4, 0                  # 8
call 2                      # 9
mov %r0, 0
exit
