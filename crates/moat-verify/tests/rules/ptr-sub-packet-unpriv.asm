# rule: an unprivileged loader may not subtract two pointers, even data_end - data (the kernel: "pointer -= pointer prohibited" without allow_ptr_leaks).
# context: xdp
# unprivileged
# reject: PointerArithmetic at 2
ldxw %r2, [%r1+0]           # 0: data
ldxw %r3, [%r1+4]           # 1: data_end
sub %r3, %r2                # 2
mov %r0, 2
exit
