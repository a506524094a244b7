; The builtins written in Lisp (vm/prelude.lisp: list/map, map/update, list/sort-by, ...) check
; their arguments first, with a message naming the builtin, and an error that a program's
; argument causes inside them is reported at the program's call, never in prelude.lisp.
;
; expect: (error badarg "map/update: expected a function, got integer 2")
; expect: (error badarg "map/update: expected a map, got nil")
; expect: (error badarg "list/sort-by: expected a function, got integer 5")
; expect: (error badarg "list/sort-by: expected a list, got integer 5")
; expect: (error badarg "list/map: expected a function, got nil")
; expect: (error badarg "list/filter: expected a function, got integer 1")
; expect: (error badarg "list/reduce: expected a function, got string \"x\"")
; expect: (2 3) {1 20} (3 2 1)
; expect-error: 25:8

(def err (thunk) (try (thunk) (catch e e)))
(print (err (fn () (map/update {} 1 2 3))))
(print (err (fn () (map/update nil 1 2 3))))
(print (err (fn () (list/sort-by 5 (list 1 2)))))
(print (err (fn () (list/sort-by head 5))))
(print (err (fn () (list/map nil (list 1)))))
(print (err (fn () (list/filter 1 (list 1)))))
(print (err (fn () (list/reduce "x" 0 (list 1)))))
(print (list/map (fn (x) (+ x 1)) (list 1 2)) (map/update {1 2} 1 (fn (v) (* v 10)) 0) (list/sort-by - (list 1 2 3)))
(def f (xs)
  (+ 1 (list/map map/put xs)))                 ; map/put takes 3 arguments: the error is here
(def g (xs) (* 2 (f xs)))
(print (g (list 1 2)))
