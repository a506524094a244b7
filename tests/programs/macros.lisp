; Macros (section 3): defmacro with quasiquote, unquote and splicing; a macro body runs at
; compile time and may call builtins; macros that define macros; nested quasiquote.
;
; expect: b nil
; expect: 2
; expect: 4
; expect: ab1
; expect: 7
; expect: 2 1
; expect: (a 5 1 2 b) (a . 5) [1 5 2 3] nil x
; expect: (1 (quasiquote (2 (unquote (3 4)))))
; expect: (1 (2 3))
; expect: 3
; expect: (foo (inner foo))
; expect: 6

(defmacro when (test & body) `(if ,test (do ,@body) nil))
(print (when (> 2 1) 'a 'b) (when false 'c))
(defmacro unless (test & body) `(if ,test nil (do ,@body)))
(print (unless false 1 2))
(defmacro unroll (n form) `(do ,@(list/map (fn (i) form) (list/range n))))
(def k 0)
(unroll 4 (set k (+ k 1)))
(print k)
(defmacro strcat (& xs) (str/join "" xs))
(print (strcat "a" "b" 1))
(defmacro def-const (name val) `(defmacro ,name () '',val))
(def-const seven 7)
(print (seven))
(defmacro swap! (a b) `(let ((tmp ,a)) (set ,a ,b) (set ,b tmp)))
(def p 1)
(def q 2)
(swap! p q)
(print p q)
(def x 5)
(print `(a ,x ,@(list 1 2) b) `(a . ,x) `[1 ,x ,@(list 2 3)] `(,@nil) `x)
(print `(1 `(2 ,(3 ,(+ 1 3)))))
(defmacro my-list (& xs) `(list ,@xs))
(print (my-list 1 (my-list 2 3)))
(defmacro count-args (& xs) (length xs))
(print (count-args a b c))
(defmacro nested-qq (v) `(list ',v `(inner ,',v)))
(print (nested-qq foo))
(defmacro sum-at-compile-time (& xs) (list/reduce + 0 xs))
(print (sum-at-compile-time 1 2 3))
