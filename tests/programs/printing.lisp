; Printed forms (section 2): functions, nested data, booleans, nil, symbols with slashes,
; and print's spacing; print returns nil.
;
; expect: #<fn f> #<fn list/map> #<fn head>
; expect: true false nil
; expect: math/sin a-b
; expect: (1 [2 (3 "four")] nil true)
; expect:
; expect: a  b
; expect:
; expect: nil
; expect: true true

(def f (x) x)
(print f list/map head)
(print true false nil)
(print 'math/sin 'a-b)
(print (list 1 [2 (list 3 "four")] nil true))
(print)
(print "a" "" "b")
(print (print))
(print (string? (str (self))) (string? (repr (fn () 1))))
