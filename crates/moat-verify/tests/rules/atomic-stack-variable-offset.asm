# rule: an atomic operation at a variable stack offset is refused even for a privileged loader, as in the kernel (its read goes to no register).
# context: buffer 8
# reject: VariableStackAccess at 8
stdw [%r10-16], 0           # 0
stdw [%r10-8], 0            # 1
ldxb %r2, [%r1+0]           # 2
and %r2, 1                  # 3
lsh %r2, 3                  # 4: 0 or 8, aligned
mov %r3, %r10               # 5
add %r3, -16                # 6
add %r3, %r2                # 7
lock add [%r3+0], %r2       # 8
mov %r0, 0
exit
