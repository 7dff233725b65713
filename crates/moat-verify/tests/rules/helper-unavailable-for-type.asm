# rule: a helper the kernel does not offer to the program type (bpf_skb_load_bytes in XDP) is refused, naming helper and type.
# context: xdp
# reject: HelperUnavailable at 4
mov %r2, 0                  # 0
mov %r3, %r10               # 1
add %r3, -8                 # 2
mov %r4, 8                  # 3
call 26                     # 4: bpf_skb_load_bytes
mov %r0, 2                  # 5
exit                        # 6
