# rule: an sk_skb program reads the socket's addresses only whole (the kernel: "size != size_default" for remote_ip4, local_ip4 and the IPv6 words).
# context: sk-skb
# reject: BadCtxAccess at 0
ldxb %r0, [%r1+92]
exit
