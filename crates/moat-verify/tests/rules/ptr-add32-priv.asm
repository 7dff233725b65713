# rule: 32-bit addition to a pointer is refused even for a privileged program (the kernel: "32-bit pointer arithmetic prohibited"; only subtraction makes a number).
# context: buffer 8
# reject: PointerArithmetic at 1
mov %r3, %r1                    # 0
add32 %r3, 3                    # 1
mov %r0, 0                      # 2
exit
