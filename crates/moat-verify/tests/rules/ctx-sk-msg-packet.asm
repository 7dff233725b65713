# rule: an sk_msg program reads its message bounds (8-byte data and data_end) and size, and writes a byte of the message proven inside them, as the kernel's sk_msg_is_valid_access allows.
# context: sk-msg
# accept
ldxw %r4, [%r1+68]          # 0: size
ldxdw %r2, [%r1+0]          # 1: data
ldxdw %r3, [%r1+8]          # 2: data_end
mov %r5, %r2                # 3
add %r5, 1                  # 4
jgt %r5, %r3, out           # 5
stb [%r2+0], 0              # 6
out:
mov %r0, 1                  # 7: SK_PASS
exit                        # 8
