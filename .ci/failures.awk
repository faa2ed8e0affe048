# Reprints the failing tests of a TAP log (node --test), each with its error and the daemon's last
# log lines, so the end of a long CI log says what failed. A suite's own "not ok" (N subtests
# failed) is skipped: its failing subtests are printed instead.
function flush() {
  if (block != "" && block !~ /failureType: '(subtestsFailed|cancelledByParent)'/) { printf "%s", block; shown++ }
  block = ""; taking = 0
}
/^ *(not )?ok [0-9]+ - / || /^ *# Subtest: / || /^ *1\.\.[0-9]+$/ { flush() }
/^ *not ok [0-9]+ - / { taking = 1; lines = 0 }
taking && lines++ < 80 { block = block substr($0, 1, 400) "\n" }
END { flush(); if (shown == 0) print "(no failing test found in the log: the failure is outside the tests)" }
