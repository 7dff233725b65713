# rule: an unprivileged loader may not move a packet pointer by a register, even one holding a known number (the kernel's Spectre v1 hardening: "pointer arithmetic with it prohibited for !root"); by an immediate it may.
# context: xdp
# unprivileged
# reject: SpeculativePointerArithmetic at 4
ldxw %r2, [%r1+0]           # 0: data
ldxw %r3, [%r1+4]           # 1: data_end
add %r2, 14                 # 2: an immediate: allowed
mov %r4, 1                  # 3
add %r2, %r4                # 4: a register: refused
mov %r0, 2
exit
