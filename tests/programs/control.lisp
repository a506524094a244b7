; Special forms (section 3): def, let (sequential), if, cond, do, set, and, or, quote.
;
; expect: 5 5 6
; expect: (20 2) 100
; expect: yes nil
; expect: (neg zero small big)
; expect: nil last
; expect: 3
; expect: true nil 3 false nil 0
; expect: (1 false)
; expect: (a b) a (quote a) (1 (2 3))
; expect: later 10
; expect: ok
; expect: 1 nil

(print (def x 5) x (set x 6))
(def y 100)
(print (let ((y 1) (z (+ y 1)) (y (* z 10))) (list y z)) y)
(print (if (> 2 1) 'yes 'no) (if false 'no))
(def classify (n) (cond ((< n 0) 'neg) ((== n 0) 'zero) ((< n 10) 'small) (true 'big)))
(print (list/map classify (list -3 0 4 99)))
(print (cond ((> 1 2) 'a)) (cond (true 'first 'last)))
(print (do 1 2 3))
(print (and) (or) (and 1 2 3) (and 1 false 3) (or false nil) (or nil 0 1))
(def log nil)
(def note (v) (set log (cons v log)) v)
(and (note 1) (note false) (note 2))
(print (reverse log))
(print '(a b) 'a ''a '(1 (2 3)))
(def use-later () (defined-later 5))
(def defined-later (v) (* v 2))
(print 'later (use-later))
(def flag false)
(def toggle () (set flag (not flag)))
(toggle)
(print (if flag 'ok 'wrong))
(print (let ((a 1)) (let ((a 2)) a) a) (let ((b 1)) nil))
