; Maps, persistent vectors, the term order and gensym (LANGUAGE.md section 9): literals and
; printing in key order, keys equal by ==, every map/ and vec/ builtin with its errors, compare,
; list/sort and list/sort-by (stable), and maps and vectors sent between schedulers (the codec).
; The output must not depend on the number of schedulers or the tier.
;
; expect: {3 nil a [1 "x"] b 2 "a" 1}
; expect: {} 0 true false false
; expect: {outer {inner "s"} [1 2] vec (1 2) list}
; expect: {q 1 r (1 {2 3})} [1 {2 3}]
; expect: {x "y"} {"k" v}
; expect: true true false
; expect: one one 1
; expect: list vec map str sym
; expect: list map nil
; expect: 2 nil dflt nil
; expect: {3 nil a [1 "x"] b 20 "a" 1} {3 nil a [1 "x"] b 2 "a" 1}
; expect: {3 nil a [1 "x"] "a" 1} {3 nil a [1 "x"] b 2 "a" 1} true false
; expect: (3 a b "a") (nil [1 "x"] 2 1)
; expect: ((a 1) (b 2)) nil nil
; expect: {a 3 b 2} {}
; expect: {a 1 b 20 c 30} {a 1} {a 1}
; expect: {a 10 b 2 c 3}
; expect: {n 2} {n 1}
; expect: true false
; expect: 20000 399960001 nil 19999
; expect: true
; expect: (badarg "map/get: expected a map, got list (1)")
; expect: (badarg "map/put: expected a map, got nil")
; expect: (badarg "sys/map-of: expected keys and values in pairs, got 3 values")
; expect: (badarg "map/from-list: expected a list of (key value) lists, got (b)")
; expect: (badarg "map/update: expected a map, got integer 5")
; expect: (badarg "map/keys: expected a map, got vector [1 2]")
; expect: (badarg "vec/get: expected a vector, got map #<map too large to print>")
; expect: -1 1 0 -1 -1
; expect: -1 -1 -1 -1 -1
; expect: -1 1 -1 0
; expect: (-1 2.5 10 nil false true y z "a" "b" [3] [1 2] (1 5) (2) {1 2})
; expect: (1.0 1 1.5 2 3) ("B" "a" "b") nil
; expect: ((0 e) (1 b) (1 d) (2 a) (2 c))
; expect: ("a" "d" "bb" "ee" "ccc")
; expect: (3 2 1)
; expect: (badarg "list/sort: expected a list, got integer 5") (badarg "list/sort-by: expected a list, got integer 5")
; expect: [a 2 3] [1 2 3 4] [2 3] [2 3] [] [x x x] [1 2 3]
; expect: [] [1] 1000
; expect: 30000 0 59998 mid 24690
; expect: true true (20 22 24)
; expect: (badarg "vec/set: index 3 out of range for a vector of 3") (badarg "vec/set: index -1 out of range for a vector of 3")
; expect: (badarg "vec/slice: end 1 is before start 2") (badarg "vec/slice: index 4 out of range for a vector of 3") (badarg "vec/make: the length must be >= 0, got -1")
; expect: (badarg "vec/push: expected a vector, got list (1)") (badarg "vec/make: expected an integer, got float 1.5")
; expect: true false false true
; expect: (2 1 outer)
; expect: 0 ({a 1 seen 0} [1 2 0] 0 {deep [{"k" "v"}]} "map key" true {inner {a 1} v [1 2] [1 2] {deep [{"k" "v"}]} {k 1} "map key"})
; expect: 1 ({a 1 seen 1} [1 2 1] 10 {deep [{"k" "v"}]} "map key" true {inner {a 1} v [1 2] [1 2] {deep [{"k" "v"}]} {k 1} "map key"})
; expect: 2 ({a 1 seen 2} [1 2 2] 20 {deep [{"k" "v"}]} "map key" true {inner {a 1} v [1 2] [1 2] {deep [{"k" "v"}]} {k 1} "map key"})
; expect: true true new
; expect: {{a [1 {}]} (1.5 "s")} vec
; expect: 2 1

; --- literals and printing: entries in key order, strings quoted inside ---
(def m {'b 2 "a" 1 'a [1 "x"] 3 nil})
(print m)
(print {} (map/size {}) (map? m) (map? '(1 2)) (map? [1]))
(print {'outer {'inner "s"} '(1 2) 'list [1 2] 'vec})
(print '{q 1 r (1 {2 3})} (quote [1 {2 3}]))
(print (str {'x "y"}) (repr {"k" 'v}))
; --- keys: equal by == are one key; lists, vectors and maps are keys ---
(print (== {1 'a 2 'b} {2 'b 1.0 'a}) (!= {1 'a} {1 'b}) (== {1 'a} {1 'a 2 'b}))
(print (map/get {1 'one} 1.0) (map/get {1.0 'one} 1) (map/size (map/put {1 'a} 1.0 'b)))
(def keyed {(list 1 2) 'list [1 2] 'vec {'k 1} 'map "s" 'str 's 'sym})
(print (map/get keyed (list 1 2)) (map/get keyed [1 2]) (map/get keyed {'k 1}) (map/get keyed "s") (map/get keyed 's))
(print (map/get keyed (list 1.0 2)) (map/get keyed {'k 1.0}) (map/get keyed '(1 2 3)))
; --- the map/ builtins ---
(print (map/get m 'b) (map/get m 'zz) (map/get m 'zz 'dflt) (map/get m 3 'dflt))
(print (map/put m 'b 20) m)
(print (map/remove m 'b) (map/remove m 'absent) (map/has? m 3) (map/has? m 'zz))
(print (map/keys m) (map/vals m))
(print (map/to-list {'b 2 'a 1}) (map/keys {}) (map/to-list {}))
(print (map/from-list '((a 1) (b 2) (a 3))) (map/from-list nil))
(print (map/merge {'a 1 'b 2} {'b 20 'c 30}) (map/merge {'a 1} {}) (map/merge {} {'a 1}))
(print (map/merge {'a 1 'b 2 'c 3} {'a 10}))
(print (map/update {'n 1} 'n (fn (x) (+ x 1)) 0) (map/update {} 'n (fn (x) (+ x 1)) 0))
(print (empty? {}) (empty? {1 2}))
(def big (list/reduce (fn (acc i) (map/put acc i (* i i))) {} (list/range 20000)))
(print (map/size big) (map/get big 19999) (map/get big 20000) (map/size (map/remove big 5)))
(print (== big (map/from-list (map/to-list big))))
; --- errors ---
(def kind (f) (try (f) (catch e (list (nth e 1) (nth e 2)))))
(print (kind (fn () (map/get '(1) 1))))
(print (kind (fn () (map/put nil 1 2))))
(print (kind (fn () (sys/map-of 1 2 3))))
(print (kind (fn () (map/from-list '((a 1) (b))))))
(print (kind (fn () (map/update 5 'k (fn (x) x) 0))))
(print (kind (fn () (map/keys [1 2]))))
(print (kind (fn () (vec/get big 0))))
; --- term order and sorting ---
(print (compare 1 2) (compare 2 1) (compare 1 1.0) (compare nil false) (compare false true))
(print (compare 'b "a") (compare "a" [1]) (compare [9] [1 1]) (compare [1 1] '(1)) (compare '(1) {}))
(print (compare '(1 2) '(1 2 3)) (compare '(1 3) '(1 2 3)) (compare {1 2} {1 3}) (compare {'a 1} {'a 1}))
(print (list/sort (list {1 2} '(2) '(1 5) [3] [1 2] "b" "a" 'z 'y true false nil 2.5 -1 10)))
(print (list/sort (list 3 1.0 2 1 1.5)) (list/sort (list "b" "B" "a")) (list/sort nil))
(print (list/sort-by (fn (p) (head p)) '((2 a) (1 b) (2 c) (1 d) (0 e))))
(print (list/sort-by str/length (list "ccc" "a" "bb" "d" "ee")))
(print (list/sort-by (fn (x) (- x)) (list 3 1 2)))
(print (kind (fn () (list/sort 5))) (kind (fn () (list/sort-by head 5))))
; --- vectors ---
(def v [1 2 3])
(print (vec/set v 0 'a) (vec/push v 4) (vec/slice v 1 3) (vec/slice v 1) (vec/slice v 3 3) (vec/make 3 'x) v)
(print (vec/make 0 1) (vec/push [] 1) (vec/len (vec/make 1000 0)))
(def grow (v i n) (if (== i n) v (grow (vec/push v (* i 2)) (+ i 1) n)))
(def g (grow [] 0 30000))
(print (vec/len g) (vec/get g 0) (vec/get g 29999) (vec/get (vec/set g 12345 'mid) 12345) (vec/get g 12345))
(print (== (vec/slice g 0 3) [0 2 4]) (== (list/to-vec (list 1 2)) [1 2]) (vec/to-list (vec/slice g 10 13)))
(print (kind (fn () (vec/set v 3 0))) (kind (fn () (vec/set v -1 0))))
(print (kind (fn () (vec/slice v 2 1))) (kind (fn () (vec/slice v 0 4))) (kind (fn () (vec/make -1 0))))
(print (kind (fn () (vec/push '(1) 2))) (kind (fn () (vec/make 1.5 0))))
; --- gensym ---
(def s1 (gensym))
(def s2 (gensym "tmp"))
(print (symbol? s1) (== s1 s2) (== s1 (gensym)) (str/starts-with? (str s2) "#:tmp"))
(defmacro swap! (a b) (let ((tmp (gensym))) `(let ((,tmp ,a)) (set ,a ,b) (set ,b ,tmp))))
(def swapped (x y) (let ((tmp 'outer)) (swap! x y) (list x y tmp)))
(print (swapped 1 2))
; --- across schedulers: maps and vectors as messages, as keys, with closures inside ---
(def me (self))
(def payload {'inner {'a 1} 'v [1 2] 'f (fn (x) (* x 10)) [1 2] {'deep [{"k" "v"}]} {'k 1} "map key"})
(def worker ()
  (receive ((list from k x)
    (send from (list k (map/put (map/get x 'inner) 'seen k) (vec/push (map/get x 'v) k)
                     ((map/get x 'f) k) (map/get x [1 2]) (map/get x {'k 1.0})
                     (== (map/remove x 'f) (map/remove payload 'f)) (map/remove x 'f))))))
(def start (k n)
  (if (< k n)
      (do (send (spawn-on (mod k (sys/schedulers)) worker) (list me k payload)) (start (+ k 1) n))))
(start 0 3)
(def collect (k) (receive ((cons j rest) :when (== j k) (print j rest))))
(collect 0)
(collect 1)
(collect 2)
(def echo () (receive ((list from x) (send from x) (echo))))
(def far (spawn-on (mod 1 (sys/schedulers)) echo))
(def round (x) (send far (list me x)) (receive (y y)))
(def bigv (list/to-vec (list/range 5000)))
(print (== (round big) big) (== (round bigv) bigv) (vec/get (vec/set (round bigv) 0 'new) 0))
(print (round {{'a [1 {}]} (list 1.5 "s")}) (map/get (round keyed) [1 2]))
(exit far 'done)
; a closure that captured an assigned variable travels in a map as a copy, like any message
(def counter (let ((n 0)) (fn () (set n (+ n 1)) n)))
(send me {'c counter})
(def copied (receive (m (map/get m 'c))))
(copied)
(print (copied) (counter))
