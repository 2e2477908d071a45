-- matmul.lua: the Lua side of bench/matmul.c. The C program lends `a` and `b` (n x n float32)
-- as globals, runs this file once, then times calls of matmul_loop(reps) with a monotonic
-- clock from C: os.clock() counts CPU time of all threads, which overstates a multi-threaded
-- sgemm, so no timing happens here.
local pr = require "prunert"

function matmul_loop(reps)
    local c
    for _ = 1, reps do
        c = a:matmul(b)
    end
    last = c -- kept so the C side can check the result against cblas_sgemm
end

-- pr.matmul must be the same kernel as the method; a cheap guard against timing the wrong thing
assert(pr.matmul ~= nil, "pr.matmul is missing")
