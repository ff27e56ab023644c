#!/bin/sh
# TEST-ONLY: print "IRIS=<rc> CACHE=<rc>": exit status of Backup.General.IsWDSuspendedExt() of each emulated
# instance, asked as its owner (5 = frozen, 3 = not frozen, anything else = could not ask).
i=$(runuser -u irisowner -- iris session IRIS -U %SYS '##class(Backup.General).IsWDSuspendedExt()' </dev/null >/dev/null 2>&1; echo $?)
c=$(runuser -u cacheusr -- csession CACHE -U %SYS '##class(Backup.General).IsWDSuspendedExt()' </dev/null >/dev/null 2>&1; echo $?)
echo "IRIS=$i CACHE=$c"
