# rule: an unprivileged loader may move a stack pointer by a register whose sign is known, not by one that may be negative or positive (the kernel's Spectre v1 hardening: "unknown scalar with mixed signed bounds").
# context: xdp
# unprivileged
# reject: SpeculativePointerArithmetic at 8
ldxw %r5, [%r1+12]          # 0: any number
and %r5, 7                  # 1: 0..7
mov %r2, %r10               # 2
add %r2, -16                # 3
add %r2, %r5                # 4: known sign: allowed
ldxw %r6, [%r1+12]          # 5
and %r6, 15                 # 6
sub %r6, 8                  # 7: -8..7
add %r2, %r6                # 8: mixed signs: refused
mov %r0, 2
exit
