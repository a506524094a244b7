; Errors (section 4): try/catch of throw, error and each runtime error kind, as the list
; (error KIND "message"); nested try; errors crossing function calls and deep recursion.
;
; expect: 42
; expect: badarg badarg badarg badarg badarg
; expect: badarg badarg badarg
; expect: badarity badarity
; expect: undef undef
; expect: (user "custom")
; expect: badmatch
; expect: (wrapped badarg)
; expect: no-error
; expect: 2
; expect: bottom
; expect: (caught 1 caught)
; expect: true true
; expect: done

(def kind (thunk) (try (thunk) (catch e (nth e 1))))
(print (try (throw (list 'bad 42)) (catch e (nth e 1))))
(print (kind (fn () (+ 1 "a"))) (kind (fn () (head nil))) (kind (fn () (tail nil)))
       (kind (fn () (nth (list 1 2) 5))) (kind (fn () (vec/get [1 2] 2))))
(print (kind (fn () (div 1 0))) (kind (fn () (< 1 'a))) (kind (fn () (1 2))))
(def two (a b) a)
(print (kind (fn () (two 1))) (kind (fn () ((fn (x) x) 1 2))))
(print (kind (fn () (no-such-function 1))) (kind (fn () no-such-global)))
(print (try (error "custom") (catch e (list (nth e 1) (nth e 2)))))
(print (kind (fn () (case 5 (6 'six)))))
(print (try (try (head nil) (catch e (throw (list 'wrapped (nth e 1))))) (catch e e)))
(print (try 'no-error (catch e 'unused)))
(print (try (try (throw 1) (catch e (+ e 1))) (catch e 'outer)))
(def deep (n) (if (== n 0) (throw 'bottom) (+ 1 (deep (- n 1)))))
(print (try (deep 10000) (catch e e)))
(def safe (n) (try (if (== n 0) (throw 'x) n) (catch e 'caught)))
(print (list/map safe (list 0 1 0)))
(def msg (try (+ 1 "a") (catch e (nth e 2))))
(print (string? msg) (> (str/length msg) 0))
(print "done")
