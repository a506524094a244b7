; Strings (sections 1, 2 and 4): `print` writes the raw text, inside a list or vector a string
; is written with its escapes; str, repr, str/length, str/split, str/join, symbol, parse-int.
;
; expect: plain text
; expect: tab	here
; expect: two
; expect: lines
; expect: ("a\nb" "q\"uote" "back\\slash" "t\tab")
; expect: ["x" "y z"]
; expect: a "a" 42 (1 "s")
; expect: a1b2.5nil(1 "x")
; expect: 5 0 3
; expect: ("a" "b" "c") ("a,b,c") ("" "x" "")
; expect: a-b-c abc 1 2 3
; expect: hello true true
; expect: 42 -17 true
; expect: héllo wörld 世界 11
; expect: "caf\u00e9" is not an escape: café

(print "plain text")
(print "tab\there")
(print "two\nlines")
(print (list "a\nb" "q\"uote" "back\\slash" "t\tab"))
(print ["x" "y z"])
(print (repr 'a) (repr "a") (repr 42) (repr (list 1 "s")))
(print (str "a" 1 'b 2.5 nil (list 1 "x")))
(print (str/length "hello") (str/length "") (str/length "a\nb"))
(print (str/split "a,b,c" ",") (str/split "a,b,c" ";") (str/split ",x," ","))
(print (str/join "-" (list "a" "b" "c")) (str/join "" (list "a" "b" "c")) (str/join " " (list 1 2 3)))
(print (symbol "hello") (symbol? (symbol "hello")) (== (symbol "hello") 'hello))
(print (parse-int "42") (parse-int "-17") (int? (parse-int "7")))
(print "héllo wörld" "世界" (str/length "héllo wörld"))
(print "\"caf\\u00e9\" is not an escape: café")
