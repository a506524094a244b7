; Savina's chameneos: C = 12 creatures (creature i placed on scheduler i + 1 modulo the number of
; schedulers) ask a mall (on scheduler 1) for meetings; the mall pairs them and tells each its
; partner's colour, and each takes the complement colour. After N meetings (the first argument,
; default 5000) the mall sends every creature `stop`. Checked: the mall's count, the creatures'
; total (2N), that no creature met itself, and the colour rule through its invariant: with the
; colours numbered 0, 1, 2, the complement of a and b is -(a+b) mod 3, so a meeting keeps the sum
; of all colours mod 3 (the creatures use the table, not the formula).
(def n (if (empty? (sys/args)) 5000 (parse-int (head (sys/args)))))
(def c 12)
(def me (self))

(def complement (a b)
  (cond ((== a b) a)
        ((== a 'blue) (if (== b 'red) 'yellow 'red))
        ((== a 'red) (if (== b 'blue) 'yellow 'blue))
        (true (if (== b 'blue) 'red 'blue))))
(def code (colour) (cond ((== colour 'blue) 0) ((== colour 'red) 1) (true 2)))
(def colours (list 'blue 'red 'yellow 'red 'yellow 'blue 'red 'red 'blue 'yellow 'red 'blue))
(def colour-of (i) (nth colours i))

(def mall (met waiting stopped)
  (if (== stopped c)
    (send me (list 'mall-closed met))
    (receive
      ((list 'meet pid id colour)
        (cond ((>= met n) (do (send pid (list 'stop)) (mall met waiting (+ stopped 1))))
              ((nil? waiting) (mall met (list pid id colour) stopped))
              (true (do (send (nth waiting 0) (list 'met id colour))
                        (send pid (list 'met (nth waiting 1) (nth waiting 2)))
                        (mall (+ met 1) nil stopped))))))))

(def creature (mall id colour meetings self-met)
  (send mall (list 'meet (self) id colour))
  (receive
    ((list 'met other oc)
      (creature mall id (complement colour oc) (+ meetings 1) (if (== other id) (+ self-met 1) self-met)))
    ((list 'stop) (send me (list 'creature id meetings self-met colour)))))

(def the-mall (spawn-on 1 mall 0 nil 0))
(list/map (fn (i) (spawn-on (+ i 1) creature the-mall i (colour-of i) 0 0)) (list/range c))
(print (receive ((list 'mall-closed met) (list 'meetings met))))
(def reports (list/map (fn (id) (receive ((list 'creature i k s col) :when (== i id) (list k s col))))
                       (list/range c)))
(print 'creature-meetings (list/reduce + 0 (list/map head reports)))
(print 'self-meetings (list/reduce + 0 (list/map (fn (r) (nth r 1)) reports)))
(print 'colour-sum-mod-3 'before (mod (list/reduce + 0 (list/map (fn (i) (code (colour-of i))) (list/range c))) 3)
       'after (mod (list/reduce + 0 (list/map (fn (r) (code (nth r 2))) reports)) 3))
