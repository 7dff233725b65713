# rule: a privileged atomic on a whole spilled pointer destroys the spill: the slot reads back as an unknown number, which is not a pointer.
# context: buffer 8
# reject: NotAPointer at 4
stxdw [%r10-8], %r10        # 0
mov %r2, 8                  # 1
lock add [%r10-8], %r2      # 2: fp+8 in the slot, as unknown data
ldxdw %r3, [%r10-8]         # 3: an unknown number
ldxdw %r0, [%r3-16]         # 4
exit
