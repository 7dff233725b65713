# rule: a fetching atomic on a whole spilled number yields that number (the old value), as in the kernel; the slot itself then holds unknown data (twin of atomic-fetch-add-stack-offset).
# context: buffer 8
# accept
stdw [%r10-8], 8                # 0
mov %r1, 1                      # 1
lock fetch add [%r10-8], %r1    # 2: r1 = 8, the old value
mov %r3, 0                      # 3
sub %r3, %r1                    # 4: -8
mov %r2, %r10                   # 5
add %r2, %r3                    # 6: fp-8
ldxdw %r0, [%r2+0]              # 7: the slot, now an unknown number
exit
