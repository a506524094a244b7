; saxpy on the device process: y = a*x + y, inputs unchanged
(def saxpy (gpu/kernel
  "__kernel void saxpy(__global const float* x, __global float* y, float a) {
     int i = get_global_id(0); y[i] = a * x[i] + y[i]; }"
  "saxpy"))
(def x (gpu/array (list 1 2 3 4)))
(def y (gpu/array (list 1 1 1 1)))
(def out (gpu/dispatch saxpy 4 x y 2.0))
(print (gpu/to-list (nth out 1)) (gpu/to-list y))
(print (try (gpu/dispatch saxpy 4 x y) (catch e (list (nth e 1) (nth e 2)))))
