# rule: bpf_tail_call needs a program array.
# context: tc
# map: values array 4 4 8
# reject: HelperArg at 3
lddw %r2, map_idx(0)        # 0
mov %r3, 0                  # 2
call 12                     # 3
mov %r0, 0
exit
