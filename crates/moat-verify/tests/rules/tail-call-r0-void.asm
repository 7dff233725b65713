# rule: bpf_tail_call returns nothing: when it falls through (no program at the index), r0 is not initialised and may not be read.
# context: tc
# map: jumps prog_array 4 4 8
# reject: UninitRegister at 5
mov %r6, %r1                # 0
lddw %r2, map_idx(0)        # 1
mov %r3, 0                  # 3
call 12                     # 4
exit                        # 5: returns whatever r0 held
