# rule: no arithmetic on data_end, with the pointer as either operand.
# Regression: `scalar + data_end` made data_end+1000, and a check of data+1000 against it "proved"
# 1000 bytes of packet that need not exist.
# context: xdp
# reject: PointerArithmetic at 3
ldxw %r2, [%r1+0]           # 0: data
ldxw %r3, [%r1+4]           # 1: data_end
mov %r4, 1000               # 2
add %r4, %r3                # 3: refused
mov %r5, %r2                # 4
add %r5, 1000               # 5
jgt %r5, %r4, out           # 6
ldxb %r0, [%r2+999]         # 7
exit
out:
mov %r0, 2
exit
