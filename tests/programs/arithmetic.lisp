; Arithmetic (LANGUAGE.md sections 2 and 4): integers of any size, floats printed as Python's
; repr prints them, true division, floor division and modulo with the divisor's sign.
;
; expect: 3 24 7 -5 0 1
; expect: 9999999999800000000001
; expect: 1267650600228229401496703205376 -1267650600228229401496703205376
; expect: 3.5 2.0 0.25 0.5
; expect: 2.0 1e+20 inf -inf -0.0 nan
; expect: 0.1 0.30000000000000004 1e-05 123456789.0 1e+16 1.5e-07
; expect: 4 -4 1 2 -2 -2
; expect: 3 7 3 1 5.5
; expect: 4.5 -2.5 3.0 1.0
; expect: true false true true false true
; expect: true true false true
; expect: 2 3 -3 2.0 8.0 1.0
; expect: 3.141592653589793 true
; expect: 100000000000000000000
; expect: 30414093201713378043612608166064768844377641568960512000000000000

(print (+ 1 2) (* 2 3 4) (- 10 1 2) (- 5) (+) (*))
(print (* 99999999999 99999999999))
(print (* 1024 1024 1024 1024 1024 1024 1024 1024 1024 1024) (- (* 1024 1024 1024 1024 1024 1024 1024 1024 1024 1024)))
(print (/ 7 2) (/ 6 3) (/ 1 4) (/ 2))
(print 2.0 1e20 (* 1e200 1e200) (- (* 1e200 1e200)) (- 0.0) (- (* 1e200 1e200) (* 1e200 1e200)))
(print 0.1 (+ 0.1 0.2) 1e-5 123456789.0 1e16 1.5e-7)
(print (div 9 2) (div -7 2) (mod 9 4) (mod -7 3) (mod 7 -3) (mod -7 -5))
(print (abs -3) (abs 7) (abs -3) (min 3 1 2) (max 1 5.5 2))
(print (+ 1 3.5) (- 0.5 3) (* 1.5 2) (+ 0.5 0.5))
(print (< 1 2 3) (< 1 3 2) (<= 1 1 2) (> 3 2 1) (>= 1 2) (>= 2 2 1))
(print (== 1 1.0) (= 2 2) (!= 1 1) (!= 1 2))
(print (math/floor 2.7) (math/ceil 2.1) (math/round -2.5) (math/sqrt 4) (math/pow 2 3) (math/cos 0))
(print math/pi (< (abs (- (math/sin math/pi) 0)) 1e-12))
(print (* 10000000000 10000000000))
(def fact (n) (if (< n 2) 1 (* n (fact (- n 1)))))
(print (fact 50))
