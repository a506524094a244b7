; Flow control (docs/io.md, "Flow control"): run by tests/test_tcp.py with -A on 1 and 3
; schedulers. A slow owner's mailbox stays bounded (an active socket, a port), nothing is lost
; once it receives; (tcp/active sock n) and 'once give n messages then (tcp-passive sock);
; false makes a socket passive again; bad modes are badarg.

(def me (self))
(def mbox () (map/get (sys/info (self)) 'mailbox))
(def t (fn (f) (try (f) (catch e (list (nth e 1) (nth e 2))))))
; the size of the mailbox once it has stopped growing (three looks 100 ms apart agree)
(def settle (fn (last same)
  (timer/sleep 100)
  (let ((m (mbox)))
    (cond ((not (== m last)) (settle m 0))
          ((>= same 2) m)
          (true (settle m (+ same 1)))))))

; A port whose owner does not receive for a while: about 10,000 messages wait, not 150,000.
(def p (port/open "seq" '("1" "150000")))
(def waiting (settle -1 0))
(print 'port-bounded (>= waiting 10000) (<= waiting 45000))   ; expect: port-bounded true true
(def count-lines (fn (k last)
  (receive
    ((list 'port q (list 'line text)) :when (== q p) (count-lines (+ k 1) text))
    ((list 'port q (list 'exit st)) :when (== q p) (list k last st)))))
(print (count-lines 0 nil))                                    ; expect: (150000 "150000" 0)

; An active socket whose owner does not receive: at most 256 messages wait (not 400 chunks).
(def l (tcp/listen 0 "127.0.0.1"))
(def chunk (str/join "" (list/map (fn (i) "0123456789") (list/range 6553))))
(def flood (fn (n) (spawn (fn ()
  (let ((c (tcp/connect "127.0.0.1" (tcp/port l))))
    (list/map (fn (i) (tcp/send c chunk)) (list/range n))
    (tcp/close c))))))
(flood 400)
(def s (tcp/accept l))
(tcp/active s)
(print 'socket-bounded (settle -1 0))                                 ; expect: socket-bounded 256
(def drain (fn (sock n)
  (receive
    ((list 'tcp q data) :when (== q sock) (drain sock (+ n (str/length data))))
    ((list 'tcp-closed q) :when (== q sock) n))))
(print (== (drain s 0) (* 400 65530)))                         ; expect: true

; (tcp/active sock n): n data messages, then (tcp-passive sock); the rest is read passively.
(def c (tcp/connect "127.0.0.1" (tcp/port l)))
(def s2 (tcp/accept l))
(def take-one (fn (sock) (receive ((list 'tcp q data) :when (== q sock) data)
                                   ((list 'tcp-passive q) :when (== q sock) 'passive)
                                   (after 5000 'nothing))))
(tcp/send c "a")
(timer/sleep 50)
(tcp/active s2 2)
(print (take-one s2))                                          ; expect: a
(tcp/send c "b")
(print (take-one s2) (take-one s2))                            ; expect: b passive
(tcp/send c "c")
(timer/sleep 50)
(print (receive (x 'unexpected) (after 100 'quiet)) (tcp/recv s2)) ; expect: quiet c
(tcp/send c "d")
(timer/sleep 50)
(tcp/active s2 'once)
(print (take-one s2) (take-one s2))                            ; expect: d passive
; counts add up; false goes back to passive at once, keeping what was not read
(tcp/active s2 1)
(tcp/active s2 2)
(list/map (fn (x) (tcp/send c x) (timer/sleep 30)) '("e" "f" "g"))
(print (take-one s2) (take-one s2) (take-one s2) (take-one s2)) ; expect: e f g passive
(tcp/active s2)
(tcp/active s2 false)
(tcp/send c "h")
(timer/sleep 50)
(print (receive (x 'unexpected) (after 100 'quiet)) (tcp/recv s2)) ; expect: quiet h
; the end of the stream while active with a count: (tcp-closed sock), as with true
(tcp/active s2 5)
(tcp/close c)
(print (receive ((list 'tcp-closed q) :when (== q s2) 'closed) (after 5000 'nothing))) ; expect: closed

; Bad modes.
(print (t (fn () (tcp/active s2 0))))
; expect: (badarg "tcp/active: expected true, false, 'once or a count of messages from 1 to 1,048,576, got integer 0")
(print (t (fn () (tcp/active s2 'twice))))
; expect: (badarg "tcp/active: expected true, false, 'once or a count of messages from 1 to 1,048,576, got symbol twice")
(print (head (t (fn () (tcp/active s2 1.5)))) (head (t (fn () (tcp/active s2 2000000)))) (head (t (fn () (tcp/active s2 nil)))))
; expect: badarg badarg badarg

; The slow owner on another scheduler: its socket there is bounded the same way.
(spawn-on 1 (fn ()
  (flood 400)
  (let ((s3 (tcp/accept l)))
    (tcp/active s3)
    (let ((m (settle -1 0)))
      (send me (list 'far m (drain s3 0)))))))
(receive ((list 'far m n) (print 'far m (== n (* 400 65530)))))  ; expect: far 256 true
