# Reprints the failing tests of a TAP log (node --test; Node 20 writes TAP when piped), each with its
# error (the block's head) and the daemon's last log lines (its tail), so the end of a long CI log
# says what failed. A suite's own "not ok" (N subtests failed) and cancelled tests are skipped: the
# failing subtests are printed instead.
function flush(   i, from) {
  if (n > 0 && !skip) {
    for (i = 1; i <= n && i <= HEAD; i++) print row[i]
    from = n - TAIL + 1
    if (from <= HEAD) from = HEAD + 1
    else print "    [... " (from - HEAD - 1) " lines ...]"
    for (i = from; i <= n; i++) print row[i]
    shown++
  }
  n = 0; skip = 0; taking = 0
}
BEGIN { HEAD = 25; TAIL = 60 }
/^ *(not )?ok [0-9]+ - / || /^ *# Subtest: / || /^ *1\.\.[0-9]+$/ { flush() }
/^ *not ok [0-9]+ - / { taking = 1 }
taking && /failureType: '(subtestsFailed|cancelledByParent)'/ { skip = 1 }
taking { row[++n] = substr($0, 1, 400) }
END { flush(); if (shown == 0) print "(no TAP \"not ok\" line of a test found: see the log above)" }
