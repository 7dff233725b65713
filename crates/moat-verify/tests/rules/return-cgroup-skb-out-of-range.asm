# rule: a cgroup skb program returns 0 (drop) or 1 (pass); 2 is refused (without the egress attach type).
# context: cgroup-skb
# reject: ReturnOutOfRange at 1
mov %r0, 2                  # 0
exit                        # 1
