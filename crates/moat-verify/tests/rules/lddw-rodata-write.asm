# rule: a read-only map (BPF_F_RDONLY_PROG, .rodata) may not be written.
# context: buffer 8
# map: rodata array 4 8 1 ro
# reject: ReadOnly at 2
lddw %r1, map_idx_value(0, 0)
stw [%r1+0], 1
mov %r0, 0
exit
