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
; expect: (error badarity "map/put takes 3 arguments, got 2")
; expect: (error badarity "str/upper takes 1 argument, got 0") (error badarity "head takes 1 argument, got 0")
; expect: (error badarity "map/get takes 2 to 3 arguments, got 1") (error badarity "str/format takes at least 1 argument, got 0")
; expect: (error badarity "map/put takes 3 arguments, got 2") (error badarity "map/put takes 3 arguments, got 1")
; expect: (error badarity "map/put takes 3 arguments, got 1") (error badarity "str/upper takes 1 argument, got 2")
; expect: (error badarity "vector? takes 1 argument, got 2") (error badarity "str/join takes 2 arguments, got 3")
; expect: (error badarg "sys/info: expected a pid, got nil") (error badarg "map/merge: expected a map, got nil")
; expect: (error badarg "+: expected numbers, got nil and integer 1")

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

; a builtin called with the wrong number of arguments: its name and its signature's counts, in
; every tier and through every path (a direct call, a call of a value, apply, list/map's loop)
(def err (thunk) (try (thunk) (catch e e)))
(print (err (fn () (map/put {} 1))))
(print (err (fn () (str/upper))) (err (fn () (head))))
(print (err (fn () (apply map/get (list {})))) (err (fn () (apply str/format nil))))
(def call2 (g) (g {} 1))
(print (err (fn () (call2 map/put))) (err (fn () (list/map map/put (list 1)))))
(print (err (fn () (list/filter map/put (list 1)))) (err (fn () (list/reduce str/upper 0 (list 1)))))
(print (err (fn () (vector? 1 2))) (err (fn () (apply str/join (list 1 2 3)))))
; nil is named once ("got nil"), not as its type and then its printed form
(print (err (fn () (sys/info nil))) (err (fn () (map/merge nil {}))))
(print (err (fn () (+ nil 1))))
