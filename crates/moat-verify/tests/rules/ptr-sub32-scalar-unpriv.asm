# rule: an unprivileged program may not subtract a pointer and a number at 32 bits (twin of ptr-sub32-scalar-priv; the kernel: "32-bit pointer arithmetic prohibited").
# context: buffer 8
# unprivileged
# reject: PointerArithmetic at 1
mov %r2, 7                      # 0
sub32 %r2, %r1                  # 1
mov %r0, 0                      # 2
exit
