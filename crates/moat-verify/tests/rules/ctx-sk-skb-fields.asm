# rule: an sk_skb program writes priority and tc_index, reads the socket's ports narrowly and addresses whole, and reads and writes the packet once bounded (twin of ctx-sk-skb-mark and ctx-sk-skb-cb-write).
# context: sk-skb
# accept
stw [%r1+32], 1             # 0: priority
stw [%r1+44], 2             # 1: tc_index
ldxh %r3, [%r1+132]         # 2: remote_port, narrowly
ldxw %r4, [%r1+96]          # 3: local_ip4
ldxw %r2, [%r1+76]          # 4: data
ldxw %r5, [%r1+80]          # 5: data_end
mov %r6, %r2                # 6
add %r6, 8                  # 7
jgt %r6, %r5, out           # 8
stxw [%r2+0], %r4           # 9: the packet is writable
stxh [%r2+4], %r3           # 10
out:
mov %r0, 1
exit
