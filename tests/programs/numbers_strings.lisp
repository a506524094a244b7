; Numbers and strings of LANGUAGE.md section 9: float, int (toward zero), quot and rem
; (truncating, Erlang's div and rem), parse-float, bit/shl and bit/shr, and the str/ builtins;
; each refusal is one clear error.
;
; expect: 3.0 -2.5 3 -3 7 3 -3 -3 1 -1 1
; expect: 1.5 -2000.0 0.5 3.0
; expect: 1024 -12 128 -3 -1 0
; expect: el llo ABC abc x y
; expect: 2 nil a+b+c true false
; expect: ("a" "b" "c") 1 + 2 = 3 {} x (1 "a")
; expect: (error badarg "quot: division by zero")
; expect: (error badarg "rem: expected an integer, got float 1.5")
; expect: (error badarg "int: expected a number, got string \"3\"")
; expect: (error badarg "/: division by zero")
; expect: (error badarg "parse-float: not a number: \"abc\"")
; expect: (error badarg "parse-float: too large for a float: \"1e999\"")
; expect: (error badarg "parse-float: not a number: \"inf\"")
; expect: (error badarg "bit/shl: a negative shift: -1")
; expect: (error system_limit "bit/shl: the integer would have more than 1,048,576 bits")
; expect: (error badarg "str/sub: 2..5 is not within a string of length 3")
; expect: (error badarity "str/sub takes 2 to 3 arguments, got 1")
; expect: (error badarg "str/replace: the part to replace is empty")
; expect: (error badarg "str/format: 2 {} in the format, 1 argument")
; expect: (error badarg "str/format: a lone '{' at 0 (write {{ for the brace itself)")
; expect: (error badarg "float: result too large for a float")
;
(print (float 3) (float -2.5) (int 3.9) (int -3.9) (int 7) (quot 7 2) (quot -7 2) (quot 7 -2) (rem 7 2) (rem -7 2) (rem 7 -2))
(print (parse-float "1.5") (parse-float " -2e3 ") (parse-float ".5") (parse-float "3"))
(print (bit/shl 1 10) (bit/shl -3 2) (bit/shr 1024 3) (bit/shr -5 1) (bit/shr -5 1000) (bit/shr 5 1000))
(print (str/sub "hello" 1 3) (str/sub "hello" 2) (str/upper "abc") (str/lower "ABC") (str/trim "  x y  "))
(print (str/find "hello" "ll") (str/find "hello" "z") (str/replace "a-b-c" "-" "+") (str/starts-with? "hello" "he") (str/ends-with? "hello" "he"))
(print (str/chars "abc") (str/format "{} + {} = {}" 1 2 (+ 1 2)) (str/format "{{}} {}" "x") (str/format "{}" (list 1 "a")))
(def try-it (f) (try (f) (catch e e)))
(print (try-it (fn () (quot 1 0))))
(print (try-it (fn () (rem 1.5 1))))
(print (try-it (fn () (int "3"))))
(print (try-it (fn () (int (/ 1.0 0.0)))))
(print (try-it (fn () (parse-float "abc"))))
(print (try-it (fn () (parse-float "1e999"))))
(print (try-it (fn () (parse-float "inf"))))
(print (try-it (fn () (bit/shl 1 -1))))
(print (try-it (fn () (bit/shl 1 2000000))))
(print (try-it (fn () (str/sub "abc" 2 5))))
(print (try-it (fn () (str/sub "abc"))))
(print (try-it (fn () (str/replace "abc" "" "x"))))
(print (try-it (fn () (str/format "{} {}" 1))))
(print (try-it (fn () (str/format "{" 1))))
(print (try-it (fn () (float (* 1000000000000000000000 (* 1000000000000000000000 (* 1000000000000000000000 (* 1000000000000000000000 (* 1000000000000000000000 (* 1000000000000000000000 (* 1000000000000000000000 (* 1000000000000000000000 (* 1000000000000000000000 (* 1000000000000000000000 (* 1000000000000000000000 (* 1000000000000000000000 (* 1000000000000000000000 (* 1000000000000000000000 (* 1000000000000000000000 1000000000000000000000)))))))))))))))))))
