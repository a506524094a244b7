; TCP echo server for perf/bench_echo.py: one process per connection (passive reads), spread over
; the node's schedulers: each handler is spawned on the next scheduler in turn, and the socket
; handed to it goes there with it (docs/io.md, "Spreading connections over schedulers").
; lispvm run --allow-net=127.0.0.1 perf/programs/echo_server.lisp  -> prints its port, serves until killed
(def echo (fn (s)
  (let ((data (try (tcp/recv s) (catch e nil))))  ; (a client that leaves may reset)
    (unless (nil? data)
      (tcp/send s data)
      (echo s)))))
(def serve (fn () (receive ((list 'sock s) (echo s) (tcp/close s)))))
(def n (sys/schedulers))
(def acceptor (fn (l k)
  (let ((s (tcp/accept l))
        (h (spawn-on (mod k n) serve)))
    (tcp/owner s h)
    (send h (list 'sock s))
    (acceptor l (+ k 1)))))
(def l (tcp/listen 0 "127.0.0.1"))
(print (tcp/port l))
(acceptor l 0)
