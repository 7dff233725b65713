# rule: an sk_skb program writes only priority and tc_index, not cb[] as a socket filter may (the kernel's sk_skb_is_valid_access).
# context: sk-skb
# reject: ReadOnly at 0
stw [%r1+48], 1
mov %r0, 1
exit
