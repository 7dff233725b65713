# rule: an unprivileged program may not pass a pointer where a helper takes a number.
# context: buffer 8
# map: values hash 4 8 16
# unprivileged
# reject: HelperArg at 9
stw [%r10-4], 0             # 0
stdw [%r10-16], 0           # 1
mov %r2, %r10               # 2
add %r2, -4                 # 3
mov %r3, %r10               # 4
add %r3, -16                # 5
lddw %r1, map_idx(0)        # 6
mov %r4, %r10               # 8: flags = a pointer
call 2                      # 9
mov %r0, 0
exit
