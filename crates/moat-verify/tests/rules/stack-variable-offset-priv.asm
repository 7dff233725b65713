# rule: a bounded variable stack offset within an initialised area (privileged).
# context: buffer 8
# accept
stdw [%r10-16], 0           # 0
stdw [%r10-8], 0            # 1
ldxb %r2, [%r1+0]           # 2
and %r2, 7                  # 3
mov %r3, %r10               # 4
add %r3, -16                # 5
add %r3, %r2                # 6
stb [%r3+0], 1              # 7
mov %r0, 0
exit
