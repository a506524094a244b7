; Sockets handed to owners on other schedulers (docs/io.md, "Spreading connections over
; schedulers"): run by tests/test_tcp.py with --schedulers 3. The socket goes to its new owner's
; scheduler at the owner's first call on it, with what was received and not yet read; calls
; from elsewhere follow it; once closed there, they fail there.

(def me (self))
(def l (tcp/listen 0 "127.0.0.1"))
(def port (tcp/port l))

; An acceptor on scheduler 0 hands each connection to a handler spawned on scheduler 1, then 2.
(def handler (fn ()
  (receive ((list 'sock s)
    (let ((line (tcp/recv-line s)))
      (tcp/send s (str line " on " (sys/scheduler-id) "\n"))
      (send me (list 'handled s))
      (receive ('close (tcp/close s) (send me 'closed))))))))
(def acceptor (fn (k)
  (let ((s (tcp/accept l))
        (h (spawn-on k handler)))
    (tcp/owner s h)
    (send h (list 'sock s))
    (send me (list 'handler h))
    (acceptor (+ k 1)))))
(def acc (spawn acceptor 1))
(def c1 (tcp/connect "127.0.0.1" port))
(tcp/send c1 "one\n")
(print (tcp/recv-line c1))                                     ; expect: one on 1
(def h1 (receive ((list 'handler h) h)))
(def s1 (receive ((list 'handled s) s)))
(def c2 (tcp/connect "127.0.0.1" port))
(tcp/send c2 "two\n")
(print (tcp/recv-line c2))                                     ; expect: two on 2
(receive ((list 'handler h) h))
(receive ((list 'handled s) s))
(exit acc 'kill)

; A process on scheduler 0 that sends on s1 (now held by scheduler 1) is taken there.
(spawn (fn () (tcp/send s1 "from elsewhere\n") (send me (list 'sender (sys/scheduler-id)))))
(receive ((list 'sender k) (print "sender now on" k)))         ; expect: sender now on 1
(print (tcp/recv-line c1))                                     ; expect: from elsewhere
; Closed by its owner there: the peer sees the end, and a call from here fails at once.
(send h1 'close)
(receive ('closed nil))
(print (tcp/recv c1))                                          ; expect: nil
(spawn (fn () (send me (try (tcp/send s1 "x") (catch e (nth e 1))))))
(print (receive (r r)))                                        ; expect: closed

; What was received before the hand-over comes along: a passive socket's unread text, and an
; active socket's messages the old owner had not received, before any new ones.
(def wait-mail (fn (k) (when (< (map/get (sys/info (self)) 'mailbox) k) (timer/sleep 5) (wait-mail k))))
(def l2 (tcp/listen 0 "127.0.0.1"))
(def c3 (tcp/connect "127.0.0.1" (tcp/port l2)))
(def c4 (tcp/connect "127.0.0.1" (tcp/port l2)))
(def reader (fn ()
  (receive ((list 'sock s)
    (send me (list 'passive (sys/scheduler-id) (tcp/recv-line s) (tcp/recv-line s)))))))
(def active-reader (fn ()
  (receive ((list 'sock s)
    (tcp/active s)
    (let ((a (receive ((list 'tcp q d) :when (== q s) d)))
          (b (receive ((list 'tcp q d) :when (== q s) d))))
      (send me (list 'active (sys/scheduler-id) a b)))))))
(spawn (fn ()
  (let ((s3 (tcp/accept l2))
        (s4 (tcp/accept l2)))
    (tcp/send c3 "first\nsecond\n")
    (print (tcp/recv-line s3))                                 ; expect: first
    (tcp/send c4 "early")
    (tcp/active s4)
    (receive ((list 'tcp q d) :when (== q s4) (timer/sleep 100)) (after 5000 nil))
    (tcp/send c4 "-still")
    (wait-mail 1)
    (let ((r (spawn-on 2 reader))
          (a (spawn-on 1 active-reader)))
      (tcp/owner s3 r)
      (send r (list 'sock s3))
      ; the message about s4 waiting in this mailbox goes with it
      (send me (list 'mailbox (map/get (sys/info (self)) 'mailbox)))
      (tcp/owner s4 a)
      (send a (list 'sock s4))
      (send me (list 'mailbox (map/get (sys/info (self)) 'mailbox)))))))
(receive ((list 'mailbox n) (print "mailbox before" n)))       ; expect: mailbox before 1
(receive ((list 'mailbox n) (print "mailbox after" n)))        ; expect: mailbox after 0
(tcp/send c3 "third\n")
(receive ((list 'passive k a b) (print k a b)))                ; expect: 2 second third
(tcp/send c4 "late")
(receive ((list 'active k a b) (print k a b)))                 ; expect: 1 -still late
