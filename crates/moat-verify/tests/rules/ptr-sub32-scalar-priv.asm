# rule: a privileged program may subtract a pointer and a number at 32 bits (either way round); the result is a number (the kernel's "32-bit ALU ops on pointers produce (meaningless) scalars", as Cilium's bpf_lxc.o does with packet pointers).
# context: buffer 8
# accept
mov %r2, 7                      # 0
sub32 %r2, %r1                  # 1: number - pointer
mov %r3, %r1                    # 2
sub32 %r3, 3                    # 3: pointer - number
mov %r0, %r2                    # 4
add %r0, %r3                    # 5: both are numbers now
exit
