; Servers, supervisors and introspection (LANGUAGE.md sections 12 and 13). Crashes here are
; (exit reason) so that no crash report is printed; tests/test_servers.py covers real errors.
; Every wait is for an event (a reply, a DOWN, a restart seen in sup/children), never a guess.

(trap-exit true)

; --- a counter server -------------------------------------------------------------------------
(def counter (kind msg from n)
  (cond ((== msg 'get) (list 'reply n n))
        ((== msg 'inc) (list 'noreply (+ n 1)))
        ((== kind 'info) (list 'noreply (+ n 100)))
        ((== msg 'from) (list 'reply (list (pid? (head from)) (ref? (nth from 1))) n))
        ((== msg 'later) (gen/reply from 'answered-later) (list 'noreply n))
        ((== msg 'bye) (list 'stop 'normal 'last-words n))
        ((== msg 'die) (list 'stop 'died n))
        ((== msg 'bad) 'not-a-result)
        (true (list 'reply (list 'unknown msg) n))))

(def c (gen/start (fn (a b) (+ a b)) counter 2 3))
(print (gen/call c 'get))                          ; expect: 5
(print (gen/cast c 'inc))                          ; expect: true
(send c 'a-plain-message)
(print (gen/call c 'get 1000))                     ; expect: 106
(print (gen/call c 'from 'infinity))              ; expect: (true true)
(print (gen/call c 'later))                        ; expect: answered-later
(register 'counter c)
(print (gen/call 'counter 'hello))                 ; expect: (unknown hello)
(print (gen/cast 'nobody-has-this-name 'x))        ; expect: true
(print (try (gen/call 'nobody-has-this-name 'x) (catch e (head (tail e)))))   ; expect: noproc
(print (try (gen/call c 'get -1) (catch e (head (tail e)))))                  ; expect: badarg
(print (try (gen/call c 'get 10 20) (catch e (head (tail e)))))               ; expect: badarity
(print (try (gen/call 42 'get) (catch e (head (tail e)))))                    ; expect: badarg
(print (try (gen/start 1 counter) (catch e (head (tail e)))))                 ; expect: badarg
(print (try (gen/reply 'x 1) (catch e (head (tail e)))))                      ; expect: badarg
(print (gen/call c 'bye))                          ; expect: last-words
(receive ((list 'EXIT p r) :when (== p c) (print "EXIT" r)))                  ; expect: EXIT normal
(print (receive (m (list 'stray m)) (after 0 'clean)))  ; expect: clean
(print (whereis 'counter) (sys/info c))            ; expect: nil nil
(print (try (gen/call c 'get) (catch e (list (head (tail e)) (str/ends-with? (nth e 2) "is not alive")))))  ; expect: (noproc true)

; the server dies during the call
(def d (gen/start (fn () 0) counter))
(print (try (gen/call d 'die) (catch e (list (head (tail e)) (str/ends-with? (nth e 2) "with reason died before replying")))))   ; expect: (noproc true)
(receive ((list 'EXIT p r) :when (== p d) (print "EXIT" r)))                  ; expect: EXIT died

; a server that exits inside its handler: the caller gets noproc
(def e (gen/start (fn () 0) (fn (kind msg from n) (exit 'handler-gave-up))))
(print (try (gen/call e 'x) (catch err (head (tail err)))))                   ; expect: noproc
(receive ((list 'EXIT p r) :when (== p e) (print "EXIT" r)))                  ; expect: EXIT handler-gave-up

; init that exits: gen/start raises noproc in a caller that traps exits
(print (try (gen/start (fn () (exit 'no-thanks)) counter) (catch err (head (tail err)))))  ; expect: noproc
(receive ((list 'EXIT _ r) (print "EXIT" r)))      ; expect: EXIT no-thanks

; --- timeouts leave no late reply behind ----------------------------------------------------------
(def slow (kind msg from st)
  (cond ((== msg 'q)
         (receive ('go nil))                       ; answers only when told to
         (list 'reply 'too-late st))
        ((== kind 'call) (list 'reply msg st))
        (true (send st 'server-done) (list 'noreply st))))
(def s (gen/start (fn (me) me) slow (self)))
(print (try (gen/call s 'q 30) (catch err (head (tail err)))))                ; expect: timeout
(send s 'go)                                       ; it replies now, to a caller that gave up
(gen/cast s 'then-tell-me)                         ; and then says so, after the reply
(receive ('server-done (print "server done")))     ; expect: server done
(print (receive (m (list 'stray m)) (after 0 'no-stray-message)))             ; expect: no-stray-message
(print (gen/call s 'now) (receive (m (list 'stray m)) (after 0 'clean)))  ; expect: now clean

; a server on another scheduler (placed there by a helper that stays alive)
(def me (self))
(def far (spawn-on 1 (fn () (send me (list 'far (gen/start (fn () 7) counter))) (receive ('stop nil)))))
(def fs (receive ((list 'far p) p)))
(print (gen/call fs 'get) (gen/call fs 'from))     ; expect: 7 (true true)
(print (try (gen/call fs 'die) (catch err (head (tail err)))))                ; expect: noproc
(send far 'stop)

; --- spawn-monitor ----------------------------------------------------------------------------
(def pm (spawn-monitor (fn () (exit 'finished))))
(print (pid? (head pm)) (ref? (nth pm 1)))         ; expect: true true
(receive ((list 'DOWN r p why) :when (== r (nth pm 1)) (print "DOWN" (== p (head pm)) why)))  ; expect: DOWN true finished
(print (try (spawn-monitor 5) (catch err (head (tail err)))))                 ; expect: badarg

; --- supervisors ------------------------------------------------------------------------------
(def worker-init (name) (register name (self)) name)
(def worker (kind msg from st)
  (cond ((== msg 'ping) (list 'reply 'pong st))
        ((== msg 'crash) (exit 'crashed))
        ((== msg 'quit) (list 'stop 'normal st))
        (true (list 'noreply st))))
(def start-w (name) (fn () (gen/start worker-init worker name)))
(def running (sup) (list/map (fn (c) (list (head c) (pid? (nth c 1)))) (sup/children sup)))
(def pid-of (sup id) (nth (head (list/filter (fn (c) (== (head c) id)) (sup/children sup))) 1))
; wait until child id of sup runs with a pid other than old (a restart is seen, not guessed)
(def await-new (sup id old)
  (let ((p (pid-of sup id)))
    (if (and (pid? p) (not (== p old))) p (do (receive (after 5 nil)) (await-new sup id old)))))

; poll sup/children until it shows `want` (or n tries have passed: then print what it shows)
(def await-running (sup want n)
  (let ((now (running sup)))
    (if (or (== now want) (== n 0)) now (do (receive (after 5 nil)) (await-running sup want (- n 1))))))

(def sup (sup/start 'one-for-one 3 60000
                    (list (list 'a (start-w 'wa) 'permanent)
                          (list 'b (start-w 'wb) 'transient)
                          (list 'c (start-w 'wc) 'temporary))))
(print (running sup))                              ; expect: ((a true) (b true) (c true))
(def a1 (whereis 'wa))
(gen/cast 'wa 'crash)
(def a2 (await-new sup 'a a1))
(print (== a2 (whereis 'wa)) (gen/call 'wa 'ping) (sys/info a1))    ; expect: true pong nil
(def b1 (whereis 'wb))
(gen/cast 'wb 'crash)                              ; transient, abnormal: restarted
(await-new sup 'b b1)
(gen/cast 'wb 'quit)                               ; transient, normal: not restarted
(gen/cast 'wc 'crash)                              ; temporary: never restarted
(print (await-running sup '((a true) (b false) (c false)) 2000))  ; expect: ((a true) (b false) (c false))
; two restarts so far; the third is allowed, the fourth in the period ends it all
(gen/cast 'wa 'crash)
(def a3 (await-new sup 'a a2))
(gen/cast 'wa 'crash)
(receive ((list 'EXIT p r) :when (== p sup) (print "supervisor EXIT" r)))    ; expect: supervisor EXIT shutdown
(print (sys/info sup) (sys/info a3) (whereis 'wa)) ; expect: nil nil nil
(print (try (sup/children sup) (catch err (head (tail err)))))               ; expect: noproc

; restarts further apart than the period do not add up
(def sup2 (sup/start 'one-for-one 1 20 (list (list 'a (start-w 'wa) 'permanent))))
(def x1 (pid-of sup2 'a))
(gen/cast 'wa 'crash)
(def x2 (await-new sup2 'a x1))
(receive (after 80 nil))
(gen/cast 'wa 'crash)
(def x3 (await-new sup2 'a x2))
(print (running sup2))                             ; expect: ((a true))

; one-for-all: one ends, all start again, in order
(def sup3 (sup/start 'one-for-all 5 60000
                     (list (list 'x (start-w 'wx) 'permanent)
                           (list 'y (start-w 'wy) 'permanent)
                           (list 'z (start-w 'wz) 'transient))))
(def before (list/map (fn (c) (nth c 1)) (sup/children sup3)))
(gen/cast 'wy 'crash)
(await-new sup3 'z (nth before 2))
(def after-pids (list/map (fn (c) (nth c 1)) (sup/children sup3)))
(print (list/map (fn (i) (== (nth before i) (nth after-pids i))) (list 0 1 2)))   ; expect: (false false false)
(print (list/map (fn (p) (sys/info p)) before))    ; expect: (nil nil nil)
(print (gen/call 'wx 'ping) (gen/call 'wy 'ping) (gen/call 'wz 'ping))       ; expect: pong pong pong

; one-for-all never starts a temporary child again (it is stopped with the others and stays
; nil), and a transient child that ended normally stays down
(def sup6 (sup/start 'one-for-all 5 60000
                     (list (list 'p (start-w 'wp6) 'permanent)
                           (list 't (start-w 'wt6) 'transient)
                           (list 'q (start-w 'wq6) 'temporary))))
(def q1 (whereis 'wq6))
(gen/cast 'wt6 'quit)
(print (await-running sup6 '((p true) (t false) (q true)) 2000))   ; expect: ((p true) (t false) (q true))
(def p1 (whereis 'wp6))
(gen/cast 'wp6 'crash)
(await-new sup6 'p p1)
(print (running sup6) (sys/info q1) (whereis 'wt6) (whereis 'wq6))  ; expect: ((p true) (t false) (q false)) nil nil nil

; a supervisor whose caller ends stops its children and ends with it
(def boss (spawn (fn () (send me (list 'sup (sup/start 'one-for-one 1 1000 (list (list 'k (start-w 'wk) 'permanent)))))
                        (receive ('stop (exit 'boss-left))))))
(def sup4 (receive ((list 'sup p) p)))
(def k1 (pid-of sup4 'k))
(def mon (monitor sup4))
(send boss 'stop)
(receive ((list 'DOWN r _ why) :when (== r mon) (print "supervisor DOWN" why)))  ; expect: supervisor DOWN boss-left
(print (sys/info k1) (whereis 'wk))                ; expect: nil nil

; a start function that fails counts as a restart, and is tried again until the limit
(def helper (spawn (fn () (register 'allow (self)) (send me 'allowed) (receive ('stop nil)))))
(receive ('allowed nil))
(def picky (name) (fn () (if (whereis 'allow) (gen/start worker-init worker name) (throw 'not-now))))
(def sup5 (sup/start 'one-for-all 3 60000 (list (list 'x (start-w 'wx5) 'permanent)
                                                 (list 'y (picky 'wy5) 'permanent))))
(print (running sup5))                             ; expect: ((x true) (y true))
(def hm (monitor helper))
(send helper 'stop)
(receive ((list 'DOWN r _ _) :when (== r hm) nil))
(gen/cast 'wx5 'crash)                             ; x starts again each time, y cannot: x is stopped
(receive ((list 'EXIT p r) :when (== p sup5) (print "supervisor EXIT" r)))   ; expect: supervisor EXIT shutdown
(print (whereis 'wx5) (whereis 'wy5))              ; expect: nil nil

;  sup/children of what is not a supervisor names sup/children and refuses the reply
(def echo (gen/start (fn () 0) (fn (k m f s) (list 'reply 'hello s))))
(def child-err (x) (try (sup/children x) (catch e (list (nth e 1) (nth e 2)))))
(print (head (child-err echo)) (str/ends-with? (nth (child-err echo) 1) "is not a supervisor"))   ; expect: badarg true
(print (child-err (self)))                    ; expect: (badarg "sup/children: a supervisor cannot ask itself")
(print (child-err 5) (child-err 'nobody))     ; expect: (badarg "sup/children: expected a pid or a registered name, got 5") (noproc "sup/children: no process is registered as nobody")

; bad specs
(def bad (fn (& args) (try (apply sup/start args) (catch err (list (head (tail err)) (nth err 2))))))
(print (bad 'one-for-some 1 1 nil))                ; expect: (badarg "sup/start: the strategy must be one-for-one or one-for-all, got one-for-some")
(print (head (bad 'one-for-one -1 1 nil)))         ; expect: badarg
(print (head (bad 'one-for-one 1 0 nil)))          ; expect: badarg
(print (bad 'one-for-one 1 1 (list (list 'a (start-w 'q) 'forever))))   ; expect: (badarg "sup/start: the restart of child a must be permanent, transient or temporary, got forever")
(print (head (bad 'one-for-one 1 1 (list (list 'a (start-w 'q) 'permanent) (list 'a (start-w 'r) 'permanent)))))  ; expect: badarg

; --- introspection ----------------------------------------------------------------------------
(def idle-named (name parent) (register name (self)) (send parent (list 'ready name)) (idle-loop))
(def idle-loop () (receive ('stop nil) ((list 'ping from) (send from 'pong) (idle-loop))))
(def w1 (spawn-on 1 idle-named 'w1 me))
(def w2 (spawn-link idle-named 'w2 me))
(def mref (monitor w2))
(receive ((list 'ready 'w1) nil))
(receive ((list 'ready 'w2) nil))
(send w1 'not-stop-yet)
(send w1 'nor-this)
(send w1 (list 'ping me))                          ; its answer: it has looked at its mailbox since
(receive ('pong nil))
(let ((i (sys/info w1)))                           ; (after the two messages: one sender, in order)
  (print (map/keys i))                             ; expect: (function links mailbox monitors reductions registered scheduler status)
  (print (map/get i 'status) (map/get i 'mailbox) (map/get i 'function) (map/get i 'registered) (map/get i 'links))  ; expect: waiting 2 idle-named w1 nil
  (print (== (map/get i 'scheduler) (mod 1 (sys/schedulers))) (> (map/get i 'reductions) 0)))  ; expect: true true
(let ((i (sys/info w2)) (m (sys/info me)))
  (print (map/get i 'links) (map/get i 'monitors) (== (map/get i 'links) (list me)))   ; expect: (#<pid 0.1>) nil true
  (print (map/get m 'status) (list/contains? w2 (map/get m 'links)) (list/contains? w2 (map/get m 'monitors))))  ; expect: running true true
(print (list/map (fn (p) (list/contains? p (sys/processes))) (list me w1 w2)))  ; expect: (true true true)
(spawn-on 1 (fn () (send me (list 'seen-from-1 (map/get (sys/info me) 'status) (map/get (sys/info w2) 'registered)
                                  (list/contains? w2 (sys/processes))))))
(receive ((list 'seen-from-1 a b c) (print a b c)))   ; expect: waiting w2 true
(def m1 (monitor w1))
(send w1 'stop)
(receive ((list 'DOWN r _ _) :when (== r m1) nil))
(print (sys/info w1) (list/contains? w1 (sys/processes)) (whereis 'w1))     ; expect: nil false nil
(print (try (sys/info 'w2) (catch err (head (tail err)))))                  ; expect: badarg
(print "done")                                     ; expect: done
