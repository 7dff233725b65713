# rule: functions may not call each other in a cycle.
# context: buffer 8
# reject: Recursion at 4
call local f                # 0
exit                        # 1
f:
call local g                # 2
exit                        # 3
g:
call local f                # 4
exit
