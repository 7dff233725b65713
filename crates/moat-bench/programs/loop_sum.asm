# Loop sum: r0 = 0 + 1 + ... + 9999, a tight register loop of three instructions per iteration
# (30 003 instructions executed). Touches no memory. Result: 49 995 000.
    mov %r0, 0
    mov %r3, 0
loop:
    add %r0, %r3
    add %r3, 1
    jlt %r3, 10000, loop
    exit
