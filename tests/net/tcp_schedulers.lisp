; Sockets on several schedulers (docs/processes.md, "Sockets and ports"): run by tests/test_tcp.py
; with --schedulers 3 only. A socket lives where it was made; tcp/owner naming a process on
; another scheduler brings that process there, and a call from elsewhere takes its caller there.

(def me (self))
(def handler (fn ()
  (receive ('go nil))
  (receive ((list 'tcp s data)
    (tcp/send s (str "got " data " on " (sys/scheduler-id) "\n"))))
  (receive ((list 'tcp-closed s) (send me (list 'handler-saw-close (sys/scheduler-id)))))))
(def server (spawn-on 1 (fn ()
  (let ((l (tcp/listen 0 "127.0.0.1")))
    (send me (list 'listening (tcp/port l) (sys/scheduler-id)))
    (let ((s (tcp/accept l))
          (h (spawn-on 2 handler)))
      (tcp/active s)
      (send me (list 'socket s))
      (receive ('ready nil))
      (tcp/owner s h)
      (send h 'go)
      (receive ('done (tcp/close l))))))))
(def port (receive ((list 'listening p k) (print "listening on scheduler" k) p)))  ; expect: listening on scheduler 1
(def c (tcp/connect "127.0.0.1" port))
(tcp/send c "ping")
(timer/sleep 50)
(send server 'ready)
(print (tcp/recv-line c))                                      ; expect: got ping on 1

; A process on scheduler 2 that sends on a socket held by scheduler 1 is taken there.
(def sock (receive ((list 'socket x) x)))
(spawn-on 2 (fn ()
  (let ((before (sys/scheduler-id)))
    (tcp/send sock "from afar\n")
    (send me (list 'sender before (sys/scheduler-id))))))
(receive ((list 'sender a b) (print "sender moved from" a "to" b)))  ; expect: sender moved from 2 to 1
; A process that owns a resource cannot be taken elsewhere by a call: it fails, as the main
; process's does (the main process never moves).
(spawn-on 2 (fn ()
  (let ((mine (tcp/listen 0 "127.0.0.1")))
    (send me (list 'pinned-call (try (tcp/send sock "x") (catch e (nth e 1))) (sys/scheduler-id))))))
(receive ((list 'pinned-call what k) (print "owner elsewhere:" what "still on" k)))  ; expect: owner elsewhere: badarg still on 2
(print "main:" (try (tcp/send sock "x") (catch e (nth e 1))))  ; expect: main: badarg

; An owner is never moved, even when it is CPU-bound beside others (balancing moves those).
(def spin (fn (k) (if (== k 0) 0 (spin (- k 1)))))
(def busy-owner (fn ()
  (let ((l (tcp/listen 0 "127.0.0.1")) (before (sys/scheduler-id)))
    (spin 200000)
    (send me (list 'owner-stayed (== before (sys/scheduler-id))))
    (tcp/close l))))
(spawn busy-owner)
(list/map (fn (i) (spawn (fn () (spin 200000)))) (list/range 4))
(receive ((list 'owner-stayed same) (print "busy owner stayed:" same)))  ; expect: busy owner stayed: true
(tcp/close c)
(receive ((list 'handler-saw-close k) (print "handler saw the close on" k)))  ; expect: handler saw the close on 1
(send server 'done)
(print "done")                                                 ; expect: done
