# rule: an sk_skb program may not read the skb's mark (the kernel's sk_skb_is_valid_access).
# context: sk-skb
# reject: BadCtxAccess at 0
ldxw %r0, [%r1+8]
exit
