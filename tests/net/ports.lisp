; Ports (LANGUAGE.md section 14): run by tests/test_ports.py with --allow-run=cat,sh,no-such-program
; on 1 and 3 schedulers. Lines and exit status as messages, standard input, its end, owners,
; refused and failing programs.

(def lines-of (fn (p acc)
  (receive
    ((list 'port q (list 'line text)) :when (== q p) (lines-of p (cons text acc)))
    ((list 'port q (list 'exit st)) :when (== q p) (list (reverse acc) st))
    (after 20000 (list 'timeout (reverse acc))))))

(def cat (port/open "cat" nil))
(port/send cat "one\ntwo\n")
(port/send cat "thr")
(port/send cat "ee")
(port/close cat)
(print (lines-of cat nil))                                    ; expect: (("one" "two" "three") 0)
(print (try (port/send cat "more") (catch e (nth e 1))))      ; expect: closed

(def sh (port/open "sh" '("-c" "echo first; echo second; exit 5")))
(print (lines-of sh nil))                                     ; expect: (("first" "second") 5)
(def killed (port/open "sh" '("-c" "kill -9 $$")))
(print (lines-of killed nil))                                 ; expect: (nil 137)

; Many lines both ways: back-pressure on standard input, every line comes back in order (many
; chunks of output, each delivered as one batch behind messages that the receive leaves alone).
(def n 60000)
(def big (port/open "cat" nil))
(def me (self))
(send me 'noise-1)
(send me 'noise-2)
(spawn (fn () (port/send big (str/join "" (list/map (fn (i) (str i "\n")) (list/range n)))) (port/close big)))
(def count-lines (fn (p k)
  (receive
    ((list 'port q (list 'line text)) :when (== q p)
     (if (== text (str k)) (count-lines p (+ k 1)) (list 'wrong k text)))
    ((list 'port q (list 'exit st)) :when (== q p) (list k st)))))
(print (count-lines big 0))                                   ; expect: (60000 0)
(print (receive (x x) (after 0 nil)) (receive (x x) (after 0 nil)) (receive (x x) (after 0 nil))) ; expect: noise-1 noise-2 nil

; port/owner hands the lines not yet received on, in order.
(def relay (port/open "sh" '("-c" "echo a; echo b; echo c; read x")))
(def wait-mail (fn (k) (when (< (map/get (sys/info (self)) 'mailbox) k) (timer/sleep 5) (wait-mail k))))
(wait-mail 3)
(def taker (spawn (fn () (send me (list 'taken (lines-of relay nil))))))
(port/owner relay taker)
(port/close relay)
(receive ((list 'taken got) (print got)))                     ; expect: (("a" "b" "c") 1)

; A port owned by a process on another scheduler (with --schedulers 3: scheduler 1).
(spawn-on 1 (fn () (let ((p (port/open "cat" nil)))
  (port/send p "far\n")
  (port/close p)
  (send me (list 'far (lines-of p nil))))))
(receive ((list 'far got) (print got)))                       ; expect: (("far") 0)

; The owner itself writes 60,000 lines through cat before it reads any: its mailbox passes the
; port's bound while its port/send waits on cat, which waits on its own full output. Reading goes
; on while the owner is blocked in a call (flow control would deadlock here otherwise).
(def echo (port/open "cat" nil))
(loop ((i 0)) (when (< i 60000) (port/send echo (str i "\n")) (recur (+ i 1))))
(port/close echo)
(print (count-lines echo 0))                                  ; expect: (60000 0)

; Refused, missing and bad calls.
(def kind (fn (thunk) (try (thunk) (catch e (nth e 1)))))
(print (kind (fn () (port/open "ls" nil))) (kind (fn () (port/open "no-such-program" nil))))  ; expect: eacces enoent
(print (kind (fn () (port/open 5 nil))) (kind (fn () (port/open "cat" "x"))) (kind (fn () (port/open "cat" '(1)))))  ; expect: badarg badarg badarg
(print (kind (fn () (port/send cat 5))) (kind (fn () (port/send 5 "x"))) (kind (fn () (port/owner cat 5))))  ; expect: badarg badarg badarg
(print "done")                                                ; expect: done
