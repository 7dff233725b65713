# rule: a 2-byte fill from the start of an 8-byte spilled number reads its low 2 bytes (the kernel's narrow fill), here 0x1234 of 0x99991234.
# context: buffer 8
# accept
mov %r2, 0x99991234         # 0
stxdw [%r10-8], %r2         # 1: an 8-byte spill
ldxh %r3, [%r10-8]          # 2: 0x1234
mov %r0, 0                  # 3
jeq %r3, 0x1234, +1         # 4: always taken
ldxb %r0, [%r1+100]         # 5: never reached
exit
