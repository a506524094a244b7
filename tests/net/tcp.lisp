; TCP (LANGUAGE.md section 14): run by tests/test_tcp.py with --allow-net on 1 and 3 schedulers.
; Listen, accept, connect, passive and active reads, owners, a large send, closed peers, killed
; owners, refused connections and bad arguments.

(def l (tcp/listen 0 "127.0.0.1"))
(def port (tcp/port l))
(print "port" (int? port) (> port 0))                       ; expect: port true true

; An echo server, one process per connection: the acceptor hands each socket to its process.
(def echo (fn (s)
  (let ((line (tcp/recv-line s)))
    (if (nil? line)
        (tcp/close s)
        (do (tcp/send s (str line "\n")) (echo s))))))
(def serve (fn (s) (receive ((list 'sock s) (echo s)))))
(def acceptor (fn (l)
  (let ((s (tcp/accept l))
        (h (spawn serve nil)))
    (tcp/owner s h)
    (send h (list 'sock s))
    (acceptor l))))
(def acc (spawn acceptor l))

(def c (tcp/connect "127.0.0.1" port))
(tcp/send c "one\ntwo\n")
(tcp/send c "thr")
(tcp/send c "ee\n")
(print (tcp/recv-line c) (tcp/recv-line c) (tcp/recv-line c))  ; expect: one two three
(tcp/send c "last")
(tcp/close c)
(print "closed twice" (tcp/close c))                          ; expect: closed twice true

; Active mode: the data comes as messages, then (tcp-closed sock).
(def c2 (tcp/connect "localhost" port))
(tcp/active c2)
(tcp/send c2 "x\ny\n")
(def collect (fn (sock acc)
  (receive
    ((list 'tcp s data) :when (== s sock)
     (if (str/ends-with? (str acc data) "y\n") (str acc data) (collect sock (str acc data))))
    (after 10000 (list 'timeout acc)))))
(print (repr (collect c2 "")))                                ; expect: "x\ny\n"
(tcp/close c2)

; A large send from one process while the owner reads: back-pressure, nothing lost.
(def chunk (str/join "" (list/map (fn (i) "0123456789abcdef") (list/range 64))))
(def big (str/join "" (list/map (fn (i) chunk) (list/range 1024))))
(print "big" (str/length big))                                ; expect: big 1048576
(def c3 (tcp/connect "127.0.0.1" port))
(def me (self))
(spawn (fn () (tcp/send c3 big) (tcp/send c3 "\n") (send me 'sent)))
(print "echoed" (str/length (tcp/recv-line c3)))              ; expect: echoed 1048576
(receive ('sent (print "sender done")))                       ; expect: sender done
(tcp/close c3)

; The peer closes: a passive read gives nil, an active socket says tcp-closed.
(def l2 (tcp/listen 0 "127.0.0.1"))
(spawn (fn () (let ((s (tcp/accept l2))) (tcp/send s "bye") (tcp/close s))))
(def c4 (tcp/connect "127.0.0.1" (tcp/port l2)))
(print (tcp/recv c4) (tcp/recv c4) (tcp/recv-line c4))        ; expect: bye nil nil
(spawn (fn () (let ((s (tcp/accept l2))) (tcp/send s "partial") (tcp/close s))))
(def c5 (tcp/connect "127.0.0.1" (tcp/port l2)))
(print (tcp/recv-line c5) (tcp/recv-line c5))                 ; expect: partial nil
(spawn (fn () (let ((s (tcp/accept l2))) (tcp/close s))))
(def c6 (tcp/connect "127.0.0.1" (tcp/port l2)))
(tcp/active c6)
(receive ((list 'tcp-closed s) :when (== s c6) (print "tcp-closed")))  ; expect: tcp-closed

; An owner that is killed: its socket is closed, and the peer sees the end.
(def holder (spawn (fn () (let ((s (tcp/accept l2))) (send me 'accepted) (receive (never nil))))))
(def c7 (tcp/connect "127.0.0.1" (tcp/port l2)))
(receive ('accepted nil))
(exit holder 'kill)
(print "after kill" (tcp/recv c7))                            ; expect: after kill nil

; A listener whose owner ends is closed: connecting is refused.
(spawn (fn () (send me (list 'gone-port (tcp/port (tcp/listen 0 "127.0.0.1"))))))
(def gone-port (receive ((list 'gone-port p) p)))
(timer/sleep 20)
(print "listener of an ended process:"
       (try (tcp/connect "127.0.0.1" gone-port) (catch e (nth e 1))))  ; expect: listener of an ended process: econnrefused

;; tcp/owner hands on the messages not yet received, in order, before new ones.
(def wait-mail (fn () (when (< (map/get (sys/info (self)) 'mailbox) 1) (timer/sleep 5) (wait-mail))))
(def two (fn ()
  (receive ((list 'tcp s d1)
    (receive ((list 'tcp s2 d2) (send me (list 'got d1 d2 (== s s2)))))))))
(spawn (fn () (let ((s (tcp/accept l2)))
  (tcp/active s)
  (wait-mail)
  (tcp/owner s (spawn two))
  (send me (list 'handed (try (tcp/recv s) (catch e (nth e 1))))))))
(def c8 (tcp/connect "127.0.0.1" (tcp/port l2)))
(tcp/send c8 "first")
(receive ((list 'handed why) (print "handed on; old owner reads:" why)))  ; expect: handed on; old owner reads: not_owner
(tcp/send c8 "second")
(receive ((list 'got a b same) (print a b same)))              ; expect: first second true

; Refused and bad calls: one clear error each.
(def kind (fn (thunk) (try (thunk) (catch e (nth e 1)))))
(def l4 (tcp/listen 0 "127.0.0.1"))
(def free (tcp/port l4))
(tcp/close l4)
(print (kind (fn () (tcp/connect "127.0.0.1" free))))         ; expect: econnrefused
(print (kind (fn () (tcp/send c "x"))) (kind (fn () (tcp/recv c))))  ; expect: closed closed
(print (kind (fn () (tcp/accept l4))))                        ; expect: closed
(print (kind (fn () (tcp/listen "80"))) (kind (fn () (tcp/listen 70000))) (kind (fn () (tcp/connect "127.0.0.1" 0))))  ; expect: badarg badarg badarg
(print (kind (fn () (tcp/send c8 42))) (kind (fn () (tcp/recv l2))) (kind (fn () (tcp/owner c8 5))))  ; expect: badarg badarg badarg
(print "active read:" (kind (fn () (tcp/recv c6))))             ; expect: active read: badarg
(print "done")                                                ; expect: done
