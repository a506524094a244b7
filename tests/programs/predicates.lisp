; Predicates, truthiness and structural equality (sections 2 and 4).
;
; expect: true false true false
; expect: true true false true
; expect: true false true
; expect: true true false
; expect: true true false
; expect: true false true
; expect: true false
; expect: true true false
; expect: true true false
; expect: yes yes yes no no
; expect: true false true true false
; expect: true true false false true false

(print (int? 1) (int? 1.0) (float? 1.5) (float? 1))
(print (number? 1) (number? 2.5) (number? "1") (string? "s"))
(print (symbol? 'a) (symbol? "a") (list? (list 1)))
(print (list? nil) (nil? nil) (nil? false))
(print (vector? [1]) (fn? +) (fn? 'head))
(print (fn? (fn (x) x)) (pid? 1) (pid? (self)))
(print (bool? false) (bool? nil))
(print (empty? nil) (empty? "") (empty? [1]))
(print (== (list 1 (list 2 "x")) (list 1 (list 2 "x"))) (== "ab" (str "a" "b")) (== 'a 'b))
(print (if 0 'yes 'no) (if "" 'yes 'no) (if (list) 'no 'yes) (if nil 'yes 'no) (if false 'yes 'no))
(print (== 1 1.0) (== true 1) (== nil (list)) (== [1 [2]] [1 [2]]) (== (cons 1 2) (cons 1 3)))
(print (not nil) (not false) (not 0) (not "") (!= 1 2) (!= (list 1) (list 1)))
