; list/map, list/filter and list/reduce given a leaf (a function that only computes a value with
; pure builtins: vm/fast.py runs it over the whole list in one Python loop) agree with the Lisp
; loops of vm/prelude.lisp in every tier: values, upvalues, a captured variable that is set,
; closures made inside, a try inside, lists that end in an empty vector or string, and the
; errors (inside the function at any element, and of a list that ends in something else).
;
; expect: (0 2 4 6) (1 3) 10 (9 8 7) ("[a]" "[b]") (5 6) (a b)
; expect: 11 (10 20) 21 ((1 2) (2 3)) (1 0 -1) (0 1)
; expect: (2) nil (2 4) nil 6 0 (x) 3
; expect: badarg "+: expected numbers, got string \"b\" and integer 1" badarg badarg badarg
; expect: "tail: expected a non-empty list, got \"ab\"" "tail: expected a non-empty list, got \"ab\"" badarg "head: expected a non-empty list, got [7]"
; expect: badarg "empty?: expected a list, vector, string or map, got integer 3"
; expect: (2 3 4) 4 leaf 200000 (10 11 12) (error badarity "#<fn fn> takes 2 arguments, got 1")

(def kind (thunk) (try (thunk) (catch e (nth e 1))))
(def why (thunk) (try (thunk) (catch e (repr (nth e 2)))))
(def k 2)
(def xs (list/range 4))
(print (list/map (fn (x) (* x k)) xs) (list/filter (fn (x) (== (mod x 2) 1)) xs)
       (list/reduce (fn (a x) (+ a x)) 4 xs) (list/reduce (fn (acc x) (cons x acc)) nil '(7 8 9))
       (list/map (fn (s) (str "[" s "]")) '("a" "b")) (list/map (fn (x) (+ x 5)) (cons 0 (cons 1 [])))
       (list/map (fn (x) (if (== x 1) 'a 'b)) (cons 1 (cons 2 ""))))
(def make-adder (n) (fn (x) (+ x n)))
(def counter 10)
(def boxed (let ((n 1)) (set n (+ n 10)) (fn (x) (+ x n))))
(print (head (list/map boxed '(0))) (list/map (fn (x) (* x counter)) '(1 2)) (list/reduce (fn (a x) (+ a (boxed x))) 0 '(-1 0))
       (list/map (fn (x) (list x ((make-adder 1) x))) '(1 2))
       (list/map (fn (x) (try (div 1 x) (catch e 0))) '(1 2 -1)) (list/map (fn (x) (head (list x))) '(0 1)))
(print (list/filter (fn (x) (> x 1)) (cons 1 (cons 2 []))) (list/filter (fn (x) true) []) (list/filter (fn (x) (int? x)) '(2 a 4))
       (list/map (fn (x) x) "") (list/reduce (fn (a x) (* a x)) 1 '(1 2 3)) (list/reduce (fn (a x) (+ a x)) 0 {})
       (list/filter (fn (x) (symbol? x)) '(1 x "x")) (list/reduce (fn (a x) (max a x)) 0 (cons 1 (cons 3 []))))
(print (kind (fn () (list/map (fn (x) (+ x 1)) '(1 2 "b" 4)))) (why (fn () (list/map (fn (x) (+ x 1)) '(1 "b"))))
       (kind (fn () (list/filter (fn (x) (head x)) '((1) 2)))) (kind (fn () (list/reduce (fn (a x) (div a x)) 1 '(1 0))))
       (kind (fn () (list/map (fn (x) x) (cons 1 2)))))
(print (why (fn () (list/map (fn (x) x) "ab"))) (why (fn () (list/filter (fn (x) x) (cons 1 "ab"))))
       (kind (fn () (list/reduce (fn (a x) x) 0 [7]))) (why (fn () (list/reduce (fn (a x) x) 0 (cons 1 [7])))))
(print (kind (fn () (list/map (fn (x) x) 3))) (why (fn () (list/filter (fn (x) x) (cons 1 (cons 2 3))))))
(print (list/map (fn (x) (+ x 1)) '(1 2 3)) (length (list/filter (fn (x) (< x 4)) (list/range 10)))
       (head (list/map (fn (x) "leaf") '(1))) (length (list/map (fn (x) (bit/and x 1)) (list/range 200000)))
       (list/map (fn (x) (+ x 10)) (list/range 3)) (try (list/map (fn (a b) a) '(1)) (catch e (list (nth e 0) (nth e 1) (nth e 2)))))
