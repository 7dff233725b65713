# rule: a fill wider than the narrow spill reads an unknown number (twin of stack-narrow-spill-fill): the branch is not decided and the out-of-bounds read is reached.
# context: buffer 8
# reject: OutOfBounds at 5
stdw [%r10-8], 0            # 0
stw [%r10-8], 1             # 1: a narrow spill of 1; the upper half stays plain data
ldxdw %r3, [%r10-8]         # 2: 8 bytes: unknown
mov %r0, 0                  # 3
jeq %r3, 1, +1              # 4
ldxb %r0, [%r1+100]         # 5: reached
exit
