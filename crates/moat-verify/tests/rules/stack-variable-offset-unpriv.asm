# rule: an unprivileged program may not address the stack with a variable offset.
# context: buffer 8
# unprivileged
# reject: VariableStackAccess at 5
ldxb %r2, [%r1+0]           # 0
and %r2, 7                  # 1: 0..7
mov %r3, %r10               # 2
add %r3, -16                # 3
add %r3, %r2                # 4
stb [%r3+0], 0              # 5
mov %r0, 0
exit
