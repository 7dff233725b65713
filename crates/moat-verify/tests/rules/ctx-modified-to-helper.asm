# rule: a helper taking the context needs the unmodified context pointer.
# context: tc
# reject: HelperArg at 1
add %r1, 4                  # 0
call 34                     # 1: bpf_get_hash_recalc(ctx)
exit
