; bench_memory.py: N processes that each wait in a receive. Argument: N.
; Each waiter reports 'up just before it waits, so when the main process has all N reports every
; waiter is parked in its receive; only then does it print "ready" and its OS pid, for the driver
; to read VmRSS. The pids are not kept in a list, so that the list does not count as process memory.
; The final receive is only a safety net: the driver ends the run with SIGTERM once it has sampled.
(def waiter (parent) (send parent 'up) (receive ('stop 'ok)))
(def n (parse-int (head (sys/args))))
(def me (self))
(def spawn-n (k) (if (== k 0) 'ok (do (spawn waiter me) (spawn-n (- k 1)))))
(def wait-up (k) (if (== k 0) 'ok (receive ('up (wait-up (- k 1))))))
(spawn-n n)
(wait-up n)
(print "ready" (sys/os-pid))
(receive (after 60000 nil))
