# A call to an unregistered helper is refused at load time.
# error: UnknownHelper
call 99999
exit
