; Closures capture variables by reference; functions are values; rest parameters and apply.
;
; expect: 1 2 3
; expect: 1 101
; expect: 11 11
; expect: (11 12 13)
; expect: (1 (2 3)) (1 nil)
; expect: 10 6 (1 2 3 4)
; expect: 120
; expect: 5
; expect: #<fn square> #<fn +>
; expect: (3 4)
; expect: 7

(def make-counter () (let ((n 0)) (fn () (set n (+ n 1)) n)))
(def c (make-counter))
(print (c) (c) (c))
(def c2 (make-counter))
(def add-to-c2 (k) (c2) k)
(print (c2) (+ 100 (c2) -1))
(def pair (let ((v 10)) (list (fn () (set v (+ v 1)) v) (fn () v))))
(print ((head pair)) ((nth pair 1)))
(print (list/map (fn (f) (f 10)) (list/map (fn (i) (fn (x) (+ x i))) (list 1 2 3))))
(def rest-args (a & more) (list a more))
(print (rest-args 1 2 3) (rest-args 1))
(print (apply + (list 1 2 3 4)) (apply + 1 2 (list 3)) (apply list 1 (list 2 3 4)))
(def compose (f g) (fn (x) (f (g x))))
(def fact (n) (if (< n 2) 1 (* n (fact (- n 1)))))
(print ((compose fact (fn (x) (+ x 1))) 4))
(def twice (f) (fn (x) (f (f x))))
(print ((twice (fn (x) (+ x 2))) 1))
(def square (x) (* x x))
(print square +)
(def adder (n) (fn (x) (set n (+ n x)) n))
(def a (adder 1))
(a 2)
(print (list (a 0) (+ (a 0) 1)))
(def shadow (list) (length list))
(print (+ (shadow (list 1 2 3)) 4))
