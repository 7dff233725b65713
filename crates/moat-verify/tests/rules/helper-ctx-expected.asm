# rule: bpf_tail_call's first argument must be the context pointer.
# context: tc
# map: jumps prog_array 4 4 8
# reject: HelperArg at 4
mov %r1, %r10               # 0
lddw %r2, map_idx(0)        # 1
mov %r3, 0                  # 3
call 12                     # 4
mov %r0, 0
exit
