# rule: an unprivileged program may not pass uninitialised stack as a map key.
# context: buffer 8
# map: values hash 4 8 16
# unprivileged
# reject: UninitStack at 5
mov %r2, %r10               # 0
add %r2, -4                 # 1
lddw %r1, map_idx(0)        # 2
mov %r3, 0                  # 4
call 1                      # 5
mov %r0, 0
exit
