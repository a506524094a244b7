; list/map, list/filter and list/reduce given a builtin (applied in one Python loop, vm/prelude.lisp
; sys/native-fn?) and given a closure agree; their errors; str and str/join on their quick
; paths (strings, floats, machine-size ints) and off them (lists, big ints, symbols).
;
; expect: (0 1 4) (0 1 4) ("1" "2.5" "a" "(1 2)" "nil") (1 2 3)
; expect: (1 3) (3) (1 "a" 2.0) (1 2.0) nil ((1))
; expect: 10 10 7.5 100000000000000000000000000000000000000001 -3 (3 2 1) 0
; expect: badarg badarg badarg badarg badarg badarg badarg
; expect: a1.5-2 12345678901234567890123456789 x(1 "b")s ""
; expect: a,b,c 1,(2),x z 3
; expect: badarg badarg system_limit system_limit
; expect: (0 1 2) 6 (2)

(def kind (thunk) (try (thunk) (catch e (nth e 1))))
(def sq (x) (* x x))
(print (list/map sq (list 0 1 2)) (list/map (fn (x) (* x x)) (list 0 1 2))
       (list/map str (list 1 2.5 'a (list 1 2) nil)) (list/map head (list (list 1) (list 2 3) (list 3))))
(print (list/filter (fn (x) (== (mod x 2) 1)) (list 1 2 3)) (list/filter (fn (x) (> x 1)) (list 1 3))
       (list/filter (fn (x) x) (list 1 false "a" nil 2.0)) (list/filter number? (list 1 'a "b" 2.0 nil))
       (list/filter int? nil) (list/filter head (list (list nil) (list 1))))
(print (list/reduce + 0 (list 1 2 3 4)) (list/reduce (fn (a x) (+ a x)) 0 (list 1 2 3 4))
       (list/reduce + 0.5 (list 1 2 4.0)) (list/reduce + 1 (list (bit/shl 10 0) 99999999999999999999999999999999999999990))
       (list/reduce - 0 (list 1 2)) (list/reduce (fn (acc x) (cons x acc)) nil (list 1 2 3)) (list/reduce max 0 nil))
(print (kind (fn () (list/map + 5))) (kind (fn () (list/map head (list (list 1) nil))))
       (kind (fn () (list/filter int? (cons 1 2)))) (kind (fn () (list/reduce + 0 (list 1 "a"))))
       (kind (fn () (list/reduce + 0 (list 1 true)))) (kind (fn () (list/reduce + "a" (list 1))))
       (kind (fn () (list/map (fn (x) x) 7))))
(print (str "a" 1.5 -2) (str 12345678901234567890123456789) (str 'x (list 1 "b") "s") (repr (str)))
(print (str/join "," (list "a" "b" "c")) (str/join "," (list 1 (list 2) "x")) (str "z" (str/join "" nil)) 3)
(def big (str/join "" (list/map (fn (i) "0123456789") (list/range 100000))))
(print (kind (fn () (str/join 1 (list "a")))) (kind (fn () (str/join "," (cons "a" "b"))))
       (kind (fn () (str/join big (list big big big big big big big big big big big))))
       (kind (fn () (str big big big big big big big big big big big big))))
(def even? (n) (== (mod n 2) 0))
(print (list/map (fn (x) x) (list/range 3)) (list/reduce + 0 (list/map + (list 1 2 3))) (list/filter even? (list 1 2)))
