; Lists and vectors (sections 2 and 4): cons cells, nil as the empty list, improper lists,
; nth from zero, the list/ builtins, vectors and their conversions.
;
; expect: (1 2 3) nil nil (1 . 2) (1 2 . 3)
; expect: 1 (2 3) (0 1 2) b
; expect: 3 0 true false
; expect: (1 2 3 4) (1 2) nil (3 2 1) nil
; expect: (1 4 9 16) (2 4) 10 (10 (1 2 3))
; expect: (0 1 2 3 4) (2 3 4) nil
; expect: (1 2 3 5 8) ("a" "b" "c") (-1.5 0 2)
; expect: true false
; expect: (a (b (c))) ((1 2) [3 4])
; expect: [1 2 3] [] 3 2 (1 2 3) [4 5] [[1] (2)]
; expect: true true false
; expect: (1 2 3)

(print (list 1 2 3) (list) '() (cons 1 2) (cons 1 (cons 2 3)))
(print (head (list 1 2 3)) (tail (list 1 2 3)) (cons 0 (list 1 2)) (nth (list 'a 'b) 1))
(print (length (list 1 2 3)) (length nil) (empty? nil) (empty? (list 1)))
(print (append (list 1 2) (list 3) (list 4)) (append (list 1 2) nil) (append) (reverse (list 1 2 3)) (reverse nil))
(print (list/map (fn (x) (* x x)) (list 1 2 3 4)) (list/filter (fn (x) (== (mod x 2) 0)) (list 1 2 3 4))
       (list/reduce + 0 (list 1 2 3 4)) (list/reduce (fn (acc x) (list acc x)) 10 (list (list 1 2 3))))
(print (list/range 5) (list/range 2 5) (list/range 0))
(print (list/sort (list 3 1 8 2 5)) (list/sort (list "c" "a" "b")) (list/sort (list 2 -1.5 0)))
(print (list/contains? 2 (list 1 2 3)) (list/contains? 'z (list 'a 'b)))
(print '(a (b (c))) (list (list 1 2) [3 4]))
(print [1 2 3] [] (vec/len [1 2 3]) (vec/get [1 2 3] 1) (vec/to-list [1 2 3]) (list/to-vec (list 4 5)) [[1] (list 2)])
(print (vector? (vector 1 2)) (== (vector 1 2) [1 2]) (== [1 2] (list 1 2)))
(print (vec/to-list (list/to-vec (list 1 2 3))))
