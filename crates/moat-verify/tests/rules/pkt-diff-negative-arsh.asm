# rule: `data - data_end` is minus the packet length, in [-65535, 0]; its sign, spread by `arsh 63`, is -1 for any non-empty packet and cannot be used as a known offset.
# Regression: the difference was typed [0, 0xffff], so `arsh 63` gave a value the verifier knew to be
# 0 while it was -1, and scaled by 4096 it moved a stack pointer to fp-4104.
# context: xdp
# reject: PointerOffset at 8
ldxw %r2, [%r1+0]           # 0: data
ldxw %r3, [%r1+4]           # 1: data_end
mov %r4, %r2                # 2
sub %r4, %r3                # 3: -len
arsh %r4, 63                # 4: -1 or 0
lsh %r4, 12                 # 5: -4096 or 0
mov %r5, %r10               # 6
add %r5, -8                 # 7
add %r5, %r4                # 8: refused (the kernel: the difference is any number)
stdw [%r5+0], 0             # 9
mov %r0, 2
exit
